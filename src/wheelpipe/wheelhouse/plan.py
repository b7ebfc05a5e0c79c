"""What a build-wheels run reuses, builds and downloads, and which service installs which wheel."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .. import thirdparty
from ..build import firstparty, metadata, sdists
from ..lockfile import Pin
from ..model import Package, Repository
from ..target import Target
from .manifest import BuiltOrigin, Entry, SdistOrigin, ThirdPartyOrigin, preferred


@dataclass(frozen=True)
class ToBuild:
    """A first-party wheel a plan still has to build."""

    name: str  # the package's distribution name


@dataclass(frozen=True)
class ToFetch:
    """A third-party wheel a plan still has to download (or build from its sdist)."""

    name: str
    version: str


@dataclass(frozen=True)
class Kept:
    """A wheel of the current wheelhouse a plan takes as it is."""

    file: str


# A wheel in a plan: one already there, or one still to make.
Planned = Kept | ToBuild | ToFetch


@dataclass(frozen=True)
class Plan:
    """What a run reuses, builds and downloads for a target, and which service installs which wheel."""

    target: Target
    reuse: dict[str, Entry]  # new entries taken as they are
    build: list[tuple[Package, BuiltOrigin]]
    fetch: list[Pin]
    installs: dict[str, set[Planned]]  # service -> its wheels
    installer: Planned  # the images' installer


def _resolve_installs(installs: dict[str, set[Planned]], made: dict[ToBuild | ToFetch, str]) -> dict[str, set[str]]:
    """Who installs which wheel file, once every wheel still to make is made (as `made` says)."""
    return {name: {_file_of(key, made) for key in keys} for name, keys in installs.items()}


def _file_of(key: Planned, made: dict[ToBuild | ToFetch, str]) -> str:
    return key.file if isinstance(key, Kept) else made[key]


def make_plan(
    repo: Repository, target: Target, selected: list[str], locks: dict[str, dict[str, Pin]], installer: Pin, old_entries: list[Entry], source: firstparty.FileSource,
) -> Plan:
    """What to reuse of `old_entries` (the current wheelhouse's, and those made for an earlier
    target in this run), build and download for the target, and who needs what."""
    reuse: dict[str, Entry] = {}
    build: list[tuple[Package, BuiltOrigin]] = []
    fetch: list[Pin] = []
    installs: dict[str, set[Planned]] = {}
    first_party_keys: dict[str, Planned] = {}
    for package in {p.name: p for name in selected for p in repo.closure(name)}.values():
        origin = _first_party_origin(package, metadata.backend_of(repo, package), source)
        found = _built_wheel(old_entries, package, origin, target)
        if found:
            reuse[found.file] = found
            first_party_keys[package.name] = Kept(found.file)
        else:
            build.append((package, origin))
            first_party_keys[package.name] = ToBuild(package.name)
    pins = thirdparty.merge_pins([*(pin for lock in locks.values() for pin in lock.values()), installer])
    third_party_keys: dict[tuple[str, str], Planned] = {}
    for key, pin in pins.items():
        found = _locked_wheel(old_entries, pin, target, sdist_build_environment(repo, pin))
        if found:
            reuse[found.file] = found
            third_party_keys[key] = Kept(found.file)
        else:
            fetch.append(pin)
            third_party_keys[key] = ToFetch(pin.name, pin.version)
    for name in selected:
        installs[name] = {first_party_keys[p.name] for p in repo.closure(name)}
        installs[name] |= {third_party_keys[(p.name, p.version)] for p in locks[name].values()}
    # Services not selected keep their part of the wheelhouse as it is (on this target: the
    # wheels it runs; the install manifests take, of each distribution, the one it prefers).
    for entry in (e for e in old_entries if e.runs_on(target)):
        for name in entry.services:
            if name in repo.services and name not in selected:
                installs.setdefault(name, set()).add(Kept(entry.file))
                reuse[entry.file] = entry
    return Plan(target, reuse, build, fetch, installs, third_party_keys[(installer.name, installer.version)])


def _first_party_origin(package: Package, backend: str, source: firstparty.FileSource) -> BuiltOrigin:
    # Which source (working tree or commit) is not recorded: equal files give an equal
    # wheel, so a release of a clean tree reuses what build-wheels built, and vice versa.
    return BuiltOrigin(
        source=package.directory,
        source_sha256=firstparty.fingerprint(source, package),
        build_backend=backend,
        source_date_epoch=source.date_epoch(package),
    )


def _third_party_matches(entry: Entry, pin: Pin) -> bool:
    return (
        isinstance(entry.origin, ThirdPartyOrigin)
        and entry.name == pin.name
        and entry.version == pin.version
        and entry.origin.locked_hash.removeprefix("sha256:") in pin.hashes
    )


def _built_wheel(entries: Iterable[Entry], package: Package, origin: BuiltOrigin, target: Target) -> Entry | None:
    """The wheel among `entries` that building the package now would give, if it runs on the target."""
    return preferred(target, (e for e in entries if e.name == package.name and e.version == package.version and e.origin == origin))


def _locked_wheel(entries: Iterable[Entry], pin: Pin, target: Target, build_environment: str | None) -> Entry | None:
    """The wheel among `entries` with one of the pin's locked hashes that the target prefers,
    if one runs there; one built from its sdist only if built in the build environment of now
    (the digest of the pin's own build lock, None without one), as building it now would be."""
    return preferred(target, (e for e in entries if _third_party_matches(e, pin) and _built_in(e, build_environment)))


def _built_in(entry: Entry, build_environment: str | None) -> bool:
    return not isinstance(entry.origin, SdistOrigin) or entry.origin.build_environment == build_environment


def sdist_build_environment(repo: Repository, pin: Pin) -> str | None:
    """The digest of the environment the pin's sdist builds in now: its own build lock's; None
    when it has none (a pin the index has a wheel of)."""
    lock = sdists.sdist_lock(repo.root, pin)
    return lock.digest if lock else None
