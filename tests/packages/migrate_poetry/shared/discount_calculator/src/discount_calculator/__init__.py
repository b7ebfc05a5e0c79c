"""Discounts, in whole cents, rounded down."""


def discounted(cents: int, percent: int) -> int:
    return cents * (100 - percent) // 100
