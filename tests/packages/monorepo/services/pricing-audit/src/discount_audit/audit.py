"""One audit round: a sample of discounts drawn as the order service draws them, tallied into a
table of percentage -> count, and every draw checked against the published bounds."""

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from discount_calculator import MAX_DISCOUNT, MIN_DISCOUNT, calculate_discount


@dataclass(frozen=True)
class Audit:
    table: dict[int, int]  # discount percentage -> how many draws gave it
    invalid: tuple[object, ...]  # draws that are not whole percentages within the bounds

    @property
    def draws(self) -> int:
        return sum(self.table.values()) + len(self.invalid)

    @property
    def passed(self) -> bool:
        return not self.invalid

    def summary(self) -> str:
        valid = sum(self.table.values())
        mean = sum(value * count for value, count in self.table.items()) / valid if valid else 0.0
        unseen = [value for value in range(MIN_DISCOUNT, MAX_DISCOUNT + 1) if value not in self.table]
        line = f"{self.draws} discounts, mean {mean:.2f} %, {len(unseen)} of {MAX_DISCOUNT - MIN_DISCOUNT + 1} values unseen"
        if self.invalid:
            shown = ", ".join(repr(value) for value in self.invalid[:5])
            return f"FAILED: {len(self.invalid)} outside whole {MIN_DISCOUNT}-{MAX_DISCOUNT} % ({shown}); {line}"
        return f"ok: {line}"


def audit_round(sample: int, rng: random.Random | None = None, draw: Callable[[random.Random | None], object] = calculate_discount) -> Audit:
    """Draw `sample` discounts with `draw` (the order service's) and tally them."""
    table: Counter[int] = Counter()
    invalid = []
    for _ in range(sample):
        value = draw(rng)
        # bool is an int to Python, and a discount of True percent is no discount.
        if type(value) is int and MIN_DISCOUNT <= value <= MAX_DISCOUNT:
            table[value] += 1
        else:
            invalid.append(value)
    return Audit(dict(sorted(table.items())), tuple(invalid))
