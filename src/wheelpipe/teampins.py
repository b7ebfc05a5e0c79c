"""A migrating team's existing pins: poetry.lock, uv.lock or requirements*.txt.

A service's first `invoke lock` starts from the versions the team already runs, found next to
the service or at the repository's root, instead of the newest release of everything; then
it says which pins moved and why. Only versions are taken, never hashes: those come from
the index like every other hash.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import LockError
from .model import Repository
from .target import Target

# In order of preference: a full lock over a hand-kept list.
_LOCK_FILES = ("poetry.lock", "uv.lock")
_REQUIREMENTS_GLOB = "requirements*.txt"


@dataclass(frozen=True)
class ExistingPins:
    source: str  # the file, relative to the repository root
    versions: dict[str, str]  # canonical name -> version

    def seed(self, exclude: set[str]) -> str:
        """A pins-only requirements file the resolvers take as their starting point."""
        return "".join(f"{name}=={version}\n" for name, version in sorted(self.versions.items()) if name not in exclude)


def find(repo: Repository, service: str) -> ExistingPins | None:
    """The team's pins for the service: its own directory first, then the repository root.
    The monorepo's own packages are never pins (a lock lists them too: Poetry's path
    dependencies, uv's workspace members)."""
    for directory in (repo.service(service).path, repo.root):
        for name in _LOCK_FILES:
            if (directory / name).is_file():
                return _third_party(repo, _read_lock(directory / name, repo.relative(directory / name)))
        for path in sorted(directory.glob(_REQUIREMENTS_GLOB)):
            pins = _read_requirements(path, repo.relative(path))
            if pins.versions:
                return _third_party(repo, pins)
    return None


def _third_party(repo: Repository, pins: ExistingPins) -> ExistingPins:
    return ExistingPins(pins.source, {name: version for name, version in pins.versions.items() if name not in repo.packages})


def _read_lock(path: Path, label: str) -> ExistingPins:
    """poetry.lock and uv.lock both list `[[package]]` tables with a name and a version."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        msg = f"{label}: not a readable lock ({error})"
        raise LockError(msg) from None
    versions: dict[str, str] = {}
    for package in data.get("package", []):
        if not isinstance(package, dict) or not isinstance(package.get("name"), str) or not isinstance(package.get("version"), str):
            continue
        source = package.get("source")
        # uv.lock lists the workspace's own members (editable, virtual): not third-party pins.
        if isinstance(source, dict) and not ({"registry", "url"} & set(source)):
            continue
        versions[canonicalize_name(package["name"])] = package["version"]
    return ExistingPins(label, versions)


def _read_requirements(path: Path, label: str) -> ExistingPins:
    versions: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line.split(" --hash", 1)[0].strip())
        except InvalidRequirement:
            continue
        exact = [s for s in requirement.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if len(exact) == 1:
            versions[canonicalize_name(requirement.name)] = exact[0].version
    return ExistingPins(label, versions)


def unfit(name: str, was: str, requirements: Sequence[Requirement], target: Target) -> Requirement | None:
    """The first requirement on `name`, applying on the target, whose specifier `was` does not
    fit; None when it fits every one of them (then something else moved it)."""
    environment = {**target.marker_environment(), "extra": ""}
    try:
        version = Version(was)
    except InvalidVersion:
        return None
    for requirement in requirements:
        if canonicalize_name(requirement.name) != name or (requirement.marker and not requirement.marker.evaluate(environment)):
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            return requirement
    return None


def report(existing: ExistingPins, resolved: dict[str, str], why: Mapping[str, str]) -> list[str]:
    """What the first lock kept of the team's pins, and each one it moved with why (`why`, by name)."""
    kept = [name for name, version in existing.versions.items() if resolved.get(name) == version]
    lines = [f"kept {len(kept)} of {len(existing.versions)} pins of {existing.source}"]
    for name, was in sorted(existing.versions.items()):
        now = resolved.get(name)
        if now is not None and now != was:
            lines.append(f"moved {name} {was} -> {now}: {why[name]}")
    unused = sorted(set(existing.versions) - set(resolved))
    if unused:
        lines.append(f"{len(unused)} pins of {existing.source} are not part of this service's closure: {', '.join(unused)}")
    return lines


def moved(existing: ExistingPins, resolved: dict[str, str]) -> dict[str, str]:
    """The team's pins the first lock moved: name -> the team's version."""
    return {name: was for name, was in existing.versions.items() if resolved.get(name) not in (None, was)}
