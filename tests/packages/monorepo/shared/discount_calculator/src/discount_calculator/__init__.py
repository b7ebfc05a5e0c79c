"""Random whole-number discount percentages for orders."""

from discount_calculator.discount import MAX_DISCOUNT, MIN_DISCOUNT, calculate_discount

__all__ = ["MAX_DISCOUNT", "MIN_DISCOUNT", "calculate_discount"]
