"""Puts every first-party package's src/ on sys.path, as the repository model finds them,
so the packages' own tests import them without an install step or a hand-kept list."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

from wheelpipe import load_repository  # noqa: E402

for _package in load_repository(ROOT).packages.values():
    sys.path.insert(0, str(_package.path / "src"))
