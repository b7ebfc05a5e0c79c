import random

MIN_DISCOUNT = 0
MAX_DISCOUNT = 20

# SystemRandom because customers see a sequence of discounts: a seeded Mersenne
# Twister could be predicted from enough of them. Tests inject a seeded Random.
_system_rng = random.SystemRandom()


def calculate_discount(rng: random.Random | None = None) -> int:
    """Return a discount percentage from MIN_DISCOUNT to MAX_DISCOUNT inclusive.

    The draw is ``rng.randint(MIN_DISCOUNT, MAX_DISCOUNT)``; pass a seeded
    ``random.Random`` for reproducible results.
    """
    source = _system_rng if rng is None else rng
    return source.randint(MIN_DISCOUNT, MAX_DISCOUNT)
