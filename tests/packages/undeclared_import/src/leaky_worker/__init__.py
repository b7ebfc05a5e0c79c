"""Posts discounts somewhere, with requests, which no pyproject.toml declares: the tooling venv
has it (twine needs it), so this imports in development and nowhere the lock installs."""

import requests

from discount_calculator import calculate_discount


def main() -> int:
    requests.post("http://127.0.0.1:9/discounts", json={"discount": calculate_discount()}, timeout=1)
    return 0
