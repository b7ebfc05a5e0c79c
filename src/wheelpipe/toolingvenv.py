"""The tooling venv (the interpreter running invoke) against the tooling lock, requirements/dev.txt.

`invoke lock` may change the tooling lock (a service's new dependency, which the tests
import, or a moved pin); the venv stays as it was installed until someone installs the lock
again, and the tests then fail on an import. `invoke test` compares the two first, from the
installed distributions' metadata (no subprocess, no index), and stops with one line saying
what differs and the exact command that installs the lock.

It does not install the lock itself: the venv is the one this very process runs from (invoke,
wheelpipe's dependencies, pytest), it may be shared or read-only (a CI image), installing
needs the package index while testing need not, and a version put there on purpose would be
undone without a word. What is installed beyond the lock (wheelpipe itself, pip, a debugger)
is not a difference: only a pinned package that is missing or at another version is.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import PipelineError
from .lockfile import parse_pins
from .requirements import TOOLING_LOCK

# How many differences one line names before "and N more".
SHOWN = 3


class ToolingVenvError(PipelineError):
    """The tooling venv does not hold what the tooling lock pins."""


@dataclass(frozen=True)
class Difference:
    """A pin of the tooling lock the venv does not satisfy."""

    name: str
    pinned: str
    installed: str | None  # None: not installed at all

    def __str__(self) -> str:
        if self.installed is None:
            return f"{self.name}=={self.pinned} missing"
        return f"{self.name} {self.installed} (pinned {self.pinned})"


def installed_versions() -> dict[str, str]:
    """Every distribution this interpreter imports from, by canonical name (the first one found
    on sys.path, as an import finds it)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def _same(installed: str, pinned: str) -> bool:
    try:
        return Version(installed) == Version(pinned)
    except InvalidVersion:
        return installed == pinned


def differences(root: Path, installed: dict[str, str] | None = None) -> list[Difference]:
    """Each pin of the repository's tooling lock that the venv lacks or holds at another
    version; none when there is no tooling lock yet (`invoke lock` writes it)."""
    lock = root / TOOLING_LOCK
    if not lock.is_file():
        return []
    pins = parse_pins(lock, TOOLING_LOCK)
    have = installed_versions() if installed is None else installed
    return [
        Difference(name, pin.version, have.get(name))
        for name, pin in sorted(pins.items())
        if name not in have or not _same(have[name], pin.version)
    ]


def install_command(root: Path) -> str:
    """The command that installs the tooling lock into this venv, as the Quick start does
    (pip, hash-checked), runnable from any directory; uv's pip when the venv has no pip."""
    lock = str(root / TOOLING_LOCK)
    if importlib.util.find_spec("pip") is None and importlib.util.find_spec("uv") is not None:
        return shlex.join([sys.executable, "-m", "uv", "pip", "install", "--python", sys.executable, "--require-hashes", "-r", lock])
    return shlex.join([sys.executable, "-m", "pip", "install", "--require-hashes", "-r", lock])


def describe(found: list[Difference]) -> str:
    shown = ", ".join(map(str, found[:SHOWN]))
    return shown + (f" and {len(found) - SHOWN} more" if len(found) > SHOWN else "")


def require_installed(root: Path) -> None:
    """Raise, in one line, when the venv does not hold every pin of the tooling lock."""
    found = differences(root)
    if found:
        msg = f"the tooling venv ({sys.prefix}) does not match {TOOLING_LOCK}: {describe(found)}; install it with `{install_command(root)}`"
        raise ToolingVenvError(msg)


def after_lock(root: Path) -> str | None:
    """What `invoke lock` says when the lock it wrote no longer matches the venv, else None."""
    found = differences(root)
    if not found:
        return None
    return f"the tooling venv no longer matches {TOOLING_LOCK}: {describe(found)}; before `invoke test`, run `{install_command(root)}`"
