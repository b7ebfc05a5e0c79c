"""Values of a pyproject.toml table, checked as they are read.

Every table the pipeline reads ([tool.wheelpipe.service], .lock, .release, .deploy.<env>)
refuses a value the same way: one line naming the file and table, the key, what it expected
and what it found, shortened so the line stays one line. A misspelt key is refused rather
than ignored: a setting that silently does nothing is what a migrating team would miss.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import PipelineError


def shown(value: object) -> str:
    """A value found in a pyproject.toml, shortened to fit in a one-line message."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def refuse_unknown_keys(table: Mapping[str, object], known: Iterable[str], where: str, error: type[PipelineError]) -> None:
    """Raise `error` for the first key of `table` (in file order) that is not `known`."""
    names = tuple(known)
    for key in table:
        if key not in names:
            msg = f"{where} has no key {key!r} (known: {', '.join(names)})"
            raise error(msg)


def matching(table: Mapping[str, object], key: str, default: str, pattern: re.Pattern[str], *, where: str, expected: str, error: type[PipelineError]) -> str:
    """`table[key]` (or `default`) when it is a string `pattern` matches whole; else `error`
    saying `{where} {key} must be {expected}`."""
    value = table.get(key, default)
    if not (isinstance(value, str) and pattern.fullmatch(value)):
        msg = f"{where} {key} must be {expected}, found {shown(value)}"
        raise error(msg)
    return value
