"""The build environment: a build lock's wheels installed, hash-checked and offline, and the
one way a backend builds a wheel in it (run_backend), for sdists and first-party packages alike.

A build installs exactly its lock's wheels into a fresh environment and calls the PEP 517
backend there: no resolution against an index happens during a build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyproject_hooks
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .. import index
from ..errors import LockError
from ..index import Indexes
from ..lockfile import Pin
from ..model import BuildSystem
from ..requirements import BUILD_LOCK
from ..target import Target
from .runner import InContainer, OnHost


def environment_digest(build_lock: dict[str, Pin]) -> str:
    """sha256:<hex> of what a build environment is made of: every pin of a build lock with
    its hashes (each build installs the whole of its lock). Notes and order in the lock do not count."""
    digest = hashlib.sha256()
    for pin in sorted(build_lock.values(), key=lambda p: p.name):
        digest.update(f"{pin.requirement_line()} {' '.join(sorted(pin.hashes))}\n".encode())
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True)
class BuildLock:
    """A build lock's pins, where their wheels come from, and the target they are for."""

    pins: dict[str, Pin]
    indexes: Indexes
    target: Target
    label: str = BUILD_LOCK  # the lock file, as messages name it


def run_backend(  # noqa: PLR0913 - the one way a backend builds: where, the work and source trees, the backend, its lock, the epoch, what to say, the dynamic-requires check
    where: OnHost | InContainer,
    work: Path,
    tree: Path,
    system: BuildSystem,
    build_lock: BuildLock,
    epoch: int,
    what: str,
    check_requires: Callable[[Sequence[str]], object] | None = None,
) -> Path:
    """The wheel `system`'s backend builds from the source tree `tree` (inside `work`), run
    `where` in a fresh environment of the whole of `build_lock`; written to work/out.

    The one way a backend builds a wheel for the target, for sdists and first-party packages
    alike. pyproject_hooks' BackendUnavailable and HookMissing are the caller's to name.
    """
    _build_requirements(work, build_lock)
    python = where.install(work, build_lock.label)
    (work / "out").mkdir()
    runner = where.runner(work, {"SOURCE_DATE_EPOCH": str(epoch), "PYTHONHASHSEED": "0"}, what)
    hooks = pyproject_hooks.BuildBackendHookCaller(
        str(tree), system.backend, backend_path=list(system.backend_path) or None, runner=runner, python_executable=python
    )
    if check_requires is not None:
        check_requires(hooks.get_requires_for_build_wheel({}))
    return work / "out" / hooks.build_wheel(where.path(work, work / "out"), {})


def require_locked(
    requirements: Sequence[str] | tuple[Requirement, ...],
    build_lock: dict[str, Pin],
    markers: dict[str, str] | None,
    wants: Callable[[Requirement], str],
    error: type[LockError] = LockError,
    label: str = BUILD_LOCK,
) -> list[Pin]:
    """The build lock's pins for these requirements; the first it does not satisfy is one
    `error` line naming the lock (`label`), `wants(requirement)` saying who needs it and how.

    Environment markers are evaluated with `markers` (None: this interpreter's own).
    """
    chosen = []
    for line in requirements:
        requirement = line if isinstance(line, Requirement) else Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(markers):
            continue
        locked = build_lock.get(canonicalize_name(requirement.name))
        if locked is None or not requirement.specifier.contains(locked.version, prereleases=True):
            found = f"pins {locked.requirement_line()}" if locked else "does not pin it"
            raise error(f"{label}: {wants(requirement)}, but the build lock {found}; run `invoke lock`")
        chosen.append(locked)
    return chosen


def host_environment(work: Path, build_lock: dict[str, Pin], indexes: Indexes, target: Target) -> str:
    """The whole build lock installed, hash-checked and offline, into a fresh venv at work/env
    with this host's interpreter; its python. The first-party backends run there."""
    _build_requirements(work, BuildLock(build_lock, indexes, target))
    return OnHost().install(work, BUILD_LOCK)


def _build_requirements(work: Path, build_lock: BuildLock) -> None:
    """The whole build lock's wheels for the target in work/build-wheels, each checked against
    its locked hash, and work/build-requirements.txt pinning each with its hashes."""
    pins = sorted(build_lock.pins.values(), key=lambda p: p.name)
    target, label = build_lock.target, build_lock.label
    for choice in index.plan(pins, build_lock.indexes, target):
        if choice.builds_from_sdist:
            msg = f"{label}: {choice.pin.requirement_line()} has no wheel for {target.describe()}; build requirements must be wheels"
            raise LockError(msg)
        index.download(choice.file, choice.pin.hashes, work / "build-wheels", f"{label}: {choice.pin.requirement_line()}")
    (work / "build-requirements.txt").write_text(
        "".join(f"{p.name}=={p.version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(p.hashes)) + "\n" for p in pins)
    )


def lock_input(first_party: dict[str, BuildSystem]) -> str:
    """requirements/build.in: what every first-party package's [build-system] requires (its backend)."""
    header = (
        "# Generated by `invoke lock`; do not edit. What the first-party packages' build backends\n"
        "# need, locked in build.txt and installed from it (each sdist-only dependency has a build\n"
        "# lock of its own under sdists/).\n"
    )
    lines = set()
    for directory, system in sorted(first_party.items()):
        header += f"#   {directory} ({system.backend}): {', '.join(map(str, system.requires)) or 'nothing'}\n"
        lines |= {str(r) for r in system.requires}
    return header + "".join(f"{line}\n" for line in sorted(lines, key=str.lower))
