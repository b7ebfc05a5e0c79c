"""Read and write hashed requirement files: the service locks and the install manifests.

Both hold only `name==version --hash=sha256:...` entries, so one strict parser serves
both; anything else (an option, a URL, a range) is an error naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import LockError

_HASH = re.compile(r"^--hash=sha256:(?P<digest>[0-9a-f]{64})$")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    hashes: frozenset[str]
    line: int

    def requirement_line(self) -> str:
        return f"{self.name}=={self.version}"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations and drop comments, remembering where each entry starts."""
    entries, current, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not current:
            start = number
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            entries.append((start, current.strip()))
        current = ""
    if current.strip():
        entries.append((start, current.strip()))
    return entries


def parse_pins(path: Path, label: str | None = None) -> dict[str, Pin]:
    """Every pin of a hashed requirements file, by canonical name."""
    label = label or str(path)
    pins: dict[str, Pin] = {}
    for number, entry in _logical_lines(path.read_text()):
        # The requirement runs up to the first option: pip-compile writes the marker of a
        # requirement declared with one (`six==1.17.0 ; python_version >= "3.8"`).
        tokens = entry.split()
        first_option = next((i for i, token in enumerate(tokens) if token.startswith("-")), len(tokens))
        requirement_text, options = " ".join(tokens[: first_option or 1]), tokens[first_option or 1 :]
        where = f"{label}:{number}"
        expected = "expected `name==version --hash=sha256:<64 hex>`"
        if requirement_text.startswith("-"):
            msg = f"{where}: {expected}, found the option {requirement_text!r}"
            raise LockError(msg)
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement:
            msg = f"{where}: {expected}, found {requirement_text!r}"
            raise LockError(msg) from None
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version or requirement.url:
            msg = f"{where}: {expected}, found the unpinned {requirement_text!r}"
            raise LockError(msg)
        hashes = set()
        for option in options:
            match = _HASH.match(option)
            if not match:
                msg = f"{where}: {expected}, found {option!r} after {requirement_text}"
                raise LockError(msg)
            hashes.add(match["digest"])
        if not hashes:
            msg = f"{where}: {expected}, found {requirement_text} without a hash"
            raise LockError(msg)
        name = canonicalize_name(requirement.name)
        if name in pins:
            msg = f"{where}: {name} is pinned twice (first on line {pins[name].line})"
            raise LockError(msg)
        pins[name] = Pin(name, specifiers[0].version, frozenset(hashes), number)
    return pins


def format_pins(entries: list[tuple[str, str, str]], header: str) -> str:
    """An install manifest: one `name==version --hash=sha256:...` per (name, version, sha256)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, version, digest in sorted(entries):
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"
