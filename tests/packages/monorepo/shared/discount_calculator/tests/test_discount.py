import random

import pytest

from discount_calculator import MAX_DISCOUNT, MIN_DISCOUNT, calculate_discount

DRAWS = 5_000


class FixedRandom(random.Random):
    """Answers every randint with one value and records the bounds asked for."""

    def __init__(self, value: int) -> None:
        super().__init__()
        self.value = value
        self.requested_bounds: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.requested_bounds.append((a, b))
        return self.value


def test_bounds_are_zero_to_twenty():
    assert (MIN_DISCOUNT, MAX_DISCOUNT) == (0, 20)


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 + 7])
def test_same_seed_gives_same_discounts(seed):
    rng_a, rng_b = random.Random(seed), random.Random(seed)

    sequence_a = [calculate_discount(rng_a) for _ in range(50)]
    sequence_b = [calculate_discount(rng_b) for _ in range(50)]

    assert sequence_a == sequence_b


@pytest.mark.parametrize("seed", [0, 42])
def test_draw_matches_randint_over_the_bounds(seed):
    expected = random.Random(seed).randint(MIN_DISCOUNT, MAX_DISCOUNT)

    assert calculate_discount(random.Random(seed)) == expected


def test_many_draws_stay_within_bounds_and_reach_every_value():
    rng = random.Random(2024)

    draws = {calculate_discount(rng) for _ in range(DRAWS)}

    assert draws == set(range(MIN_DISCOUNT, MAX_DISCOUNT + 1))


@pytest.mark.parametrize("value", [MIN_DISCOUNT, 7, MAX_DISCOUNT])
def test_returns_what_the_injected_rng_draws(value):
    rng = FixedRandom(value)

    assert calculate_discount(rng) == value
    assert rng.requested_bounds == [(MIN_DISCOUNT, MAX_DISCOUNT)]


def test_default_source_returns_an_int_within_bounds():
    for _ in range(200):
        discount = calculate_discount()
        assert type(discount) is int
        assert MIN_DISCOUNT <= discount <= MAX_DISCOUNT
