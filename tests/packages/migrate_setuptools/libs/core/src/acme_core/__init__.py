"""Running totals."""

import attrs


@attrs.frozen
class Totals:
    count: int = 0
    total: int = 0

    def add(self, amount: int) -> "Totals":
        return Totals(self.count + 1, self.total + amount)

    def describe(self) -> str:
        return f"{self.count} item(s), total {self.total}"
