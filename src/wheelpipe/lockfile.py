"""Read and write hashed requirement files: the service locks and the install manifests.

Both hold only `name==version --hash=sha256:...` entries, so one strict parser serves
both; anything else (an option, a URL, a range) is an error naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker
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
    source: str = field(default="", compare=False)  # the file that pins it, for messages
    marker: str = field(default="", compare=False)  # an environment marker written after it, if any

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


def _read(path: Path, label: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        msg = f"{label}:{line}: not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})"
        raise LockError(msg) from None


def parse_pins(path: Path, label: str | None = None) -> dict[str, Pin]:
    """Every pin of a hashed requirements file, by canonical name."""
    label = label or str(path)
    return parse_pins_text(_read(path, label), label)


def parse_pins_text(text: str, label: str) -> dict[str, Pin]:
    """Every pin of a hashed requirements file's text, by canonical name; `label` names it."""
    pins: dict[str, Pin] = {}
    for number, entry in _logical_lines(text):
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
        marker = str(requirement.marker) if requirement.marker else ""
        pins[name] = Pin(name, specifiers[0].version, frozenset(hashes), number, label, marker)
    return pins


# Marker variables the target does not declare (the kernel the image will run on): a marker
# naming one cannot be decided for the target.
_UNDECLARED_MARKER = re.compile(r"\b(platform_release|platform_version)\b")


def check_markers(pins: dict[str, Pin], environment: dict[str, str], target: str) -> None:
    """Refuse a pin whose environment marker does not hold on the target.

    A lock is resolved for the one target, and `invoke lock` writes no marker; a resolver
    writes one that was declared with a requirement (`six==1.17.0 ; python_version >= "3.8"`)
    only when it holds there. So a marker that is false on the target, or that the target
    cannot decide, was put there by hand or comes from a lock for another target: leaving the
    pin out would ship less than the lock names, installing it would ship what the lock says
    does not belong; either way the lock is not the target's. `target` describes it.
    """
    for pin in sorted(pins.values(), key=lambda p: p.line):
        if not pin.marker:
            continue
        where = f"{pin.source}:{pin.line}: {pin.requirement_line()} is pinned only where `{pin.marker}`"
        undeclared = _UNDECLARED_MARKER.search(pin.marker)
        if undeclared:
            msg = f"{where}, and the target {target} does not declare {undeclared[1]}; a lock for the target carries no markers: run `invoke lock`"
            raise LockError(msg)
        if not Marker(pin.marker).evaluate({**environment, "extra": ""}):
            msg = f"{where}, which is false on the target {target}; a lock for the target carries no markers: run `invoke lock`"
            raise LockError(msg)


def format_pins(entries: list[tuple[str, str, str]], header: str) -> str:
    """An install manifest: one `name==version --hash=sha256:...` per (name, version, sha256)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, version, digest in sorted(entries):
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


LOCK_HEADER = (
    "# Generated by `invoke lock`; do not edit. To regenerate:\n"
    "#    invoke lock\n"
    "# Every pin of the closure for the target, with the sha256 of every file the index publishes for it.\n"
)


def via_notes(text: str) -> dict[str, list[str]]:
    """The `# via` notes a resolver writes under each pin, by canonical name."""
    notes: dict[str, list[str]] = {}
    current, in_via = None, False
    for raw in text.splitlines():
        stripped = raw.strip()
        if raw[:1].isalnum():
            current, in_via = canonicalize_name(re.split(r"[=<>!~ ;\[]", raw, maxsplit=1)[0]), False
            notes[current] = []
        elif current and stripped.startswith("# via"):
            in_via = True
            if stripped[5:].strip():
                notes[current].append(stripped[5:].strip())
        elif current and in_via and stripped.startswith("#   "):
            notes[current].append(stripped[1:].strip())
        elif not stripped.startswith("--hash"):
            in_via = False
    return notes


def canonical_lock(path: Path, label: str) -> str:
    """A resolver's output in the one lock format every resolver shares.

    uv and pip-compile agree on pins, hashes and `# via` notes but not on headers, the
    placement of pip/setuptools or the order of notes; rewriting their output makes a lock
    depend only on the resolution, so `lock --check` can compare across resolvers.
    """
    return lock_text(parse_pins(path, label), via_notes(_read(path, label)))


def lock_text(pins: dict[str, Pin], notes: dict[str, list[str]]) -> str:
    """The canonical lock of `pins` (each with every hash), with their `# via` notes."""
    lines = [LOCK_HEADER.rstrip("\n")]
    for name in sorted(pins):
        pin = pins[name]
        hashes = sorted(pin.hashes)
        lines.append(f"{pin.requirement_line()} \\")
        lines += [f"    --hash=sha256:{digest} \\" for digest in hashes[:-1]]
        lines.append(f"    --hash=sha256:{hashes[-1]}")
        via = sorted(set(notes.get(name, [])))
        if len(via) == 1:
            lines.append(f"    # via {via[0]}")
        elif via:
            lines.append("    # via")
            lines += [f"    #   {note}" for note in via]
    return "\n".join(lines) + "\n"
