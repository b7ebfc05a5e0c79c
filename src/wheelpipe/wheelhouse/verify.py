"""A wheelhouse checked: on its own (every wheel against manifest.json), against the repository (derived files, locks, target), and whole (`check_intact`, `check_locked`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from ..build import firstparty, metadata
from ..errors import LockError, WheelhouseError
from ..fsutil import sha256_file
from ..lockfile import Pin, parse_pins
from ..model import Package, Repository
from ..requirements import TOOLING_LOCK, lock_file, sdist_lock_file
from ..target import Target, described
from .manifest import (
    _INSTALL_PIN,
    _REBUILD,
    _REGENERATE,
    CHECKSUMS,
    INSTALL_DIR,
    MANIFEST,
    WHEELHOUSE,
    BuiltOrigin,
    DownloadedOrigin,
    Entry,
    Install,
    Wheelhouse,
    _checksum_lines,
    _clip,
    _compose,
    _installed,
    _read_manifest,
    _render_files,
    _tag_list,
    install_path,
)
from .plan import _built_wheel, _first_party_origin, _locked_wheel, _third_party_matches, sdist_build_environment
from .store import _current, _strays


@dataclass
class Result:
    wheelhouse: Wheelhouse
    built: list[str]
    downloaded: list[str]


@dataclass(frozen=True)
class Verified:
    """What `verify_against` found true of the wheelhouse, for the command to print."""

    wheelhouse: Wheelhouse
    targets: tuple[Target, ...]
    services: tuple[str, ...]

    def lines(self) -> list[str]:
        manifests = ", ".join(install_path(self.targets, t, s) for t in self.targets for s in self.services)
        locks = ", ".join(lock_file(s) for s in self.services)
        runs = f"the target {self.targets[0].describe()}" if len(self.targets) == 1 else f"one of the targets {' and '.join(t.describe() for t in self.targets)}"
        return [
            f"{WHEELHOUSE}/: {len(self.wheelhouse.entries)} wheels match their sha256 in {MANIFEST} and run on {runs}",
            f"{WHEELHOUSE}/{manifests}: exactly what {locks} and the first-party sources give",
            f"{WHEELHOUSE}/{MANIFEST}, {CHECKSUMS}: exactly what the wheels and the locks give; no other file",
        ]


def verify(directory: Path) -> Wheelhouse:
    """The wheelhouse in `directory`, checked without the repository: manifest.json well formed,
    every wheel there with its recorded sha256 and tags that the recorded target accepts, and
    every install manifest pinning wheels of this wheelhouse. `verify_against` checks the rest."""
    house = _load(directory)
    for entry in house.entries.values():
        _require_runs_on(entry, house.targets, f" {MANIFEST} records,")
    by_hash = {e.sha256: e for e in house.entries.values()}
    for manifest in sorted((directory / INSTALL_DIR).rglob("*.txt")):
        label = f"{WHEELHOUSE}/{manifest.relative_to(directory).as_posix()}"
        for pin in parse_pins(manifest, label).values():
            (digest,) = pin.hashes
            if digest not in by_hash:
                msg = f"{label}:{pin.line}: {pin.requirement_line()} pins sha256 {digest}, which no wheel in the wheelhouse has"
                raise WheelhouseError(msg)
    return house


def verify_against(repo: Repository, source: firstparty.FileSource | None = None) -> Verified:
    """The current wheelhouse checked against the repository: every wheel intact and for the
    target, and every other file exactly what the current locks, first-party sources and
    wheels give (what `invoke build-wheels` would write), with nothing else there."""
    house = _load(_current(repo.root))
    check_intact(house)
    check_locked(repo, house.entries.values())
    for entry in house.entries.values():
        _require_runs_on(entry, repo.targets, "")
    services = list(repo.services)
    derived = _derive(repo, house.entries.values(), source)
    files = derived.files(repo.targets)
    for install in derived.installs:
        name = install.path
        if not (house.path / name).is_file():
            msg = f"{WHEELHOUSE}/{name}: missing; {_REGENERATE}"
            raise WheelhouseError(msg)
        if (house.path / name).read_bytes() != files[name].encode():
            where = f"{repo.relative(repo.lock_path(install.service))}, the first-party sources and {WHEELHOUSE}/{MANIFEST}"
            msg = f"{WHEELHOUSE}/{name}: differs from what {where} give: {_difference(house.path, name, files[name])}; {_REGENERATE}"
            raise WheelhouseError(msg)
    if house.targets != repo.targets:
        msg = f"{WHEELHOUSE}/{MANIFEST}: records {described(house.targets)}, but pyproject.toml [tool.wheelpipe.target] declares {described(repo.targets)}; {_REGENERATE}"
        raise WheelhouseError(msg)
    unused = sorted(set(house.entries) - {e.file for e in derived.entries})
    if unused:
        msg = f"{WHEELHOUSE}/{MANIFEST}: lists {', '.join(unused)}, which no current lock or first-party package needs; {_REGENERATE}"
        raise WheelhouseError(msg)
    for name in (MANIFEST, CHECKSUMS):
        path = house.path / name
        if not path.is_file():
            msg = f"{WHEELHOUSE}/{name}: missing; {_REGENERATE}"
            raise WheelhouseError(msg)
        if path.read_bytes() != files[name].encode():
            msg = f"{WHEELHOUSE}/{name}: differs from what the wheels and the locks give: {_difference(house.path, name, files[name])}; {_REGENERATE}"
            raise WheelhouseError(msg)
    strays = _strays(house.path, set(files) | set(house.entries))
    if strays:
        listed = ", ".join(f"{WHEELHOUSE}/{s}" for s in strays)
        msg = f"{listed}: not part of the wheelhouse (it holds only the wheels {MANIFEST} lists, {MANIFEST}, {CHECKSUMS} and {INSTALL_DIR}/<service>.txt of each service); {_REGENERATE} to leave it out"
        raise WheelhouseError(msg)
    return Verified(house, repo.targets, tuple(services))


def _require_runs_on(entry: Entry, targets: tuple[Target, ...], recorded: str) -> None:
    """A wheel of the wheelhouse runs on one of its targets; `recorded` says whose targets."""
    if not any(entry.runs_on(target) for target in targets):
        which = f"the target{recorded} {targets[0].describe()}" if len(targets) == 1 else f"any of the targets{recorded} {' and '.join(t.describe() for t in targets)}"
        msg = f"{WHEELHOUSE}/{entry.file}: its tags {_tag_list(entry.tags)} do not run on {which}; {_REGENERATE}"
        raise WheelhouseError(msg)


def check_intact(house: Wheelhouse) -> None:
    """Every derived file of the generation (install manifests, SHA256SUMS) exactly what its
    manifest.json gives, and manifest.json the file SHA256SUMS records. A difference means a file
    was edited after build-wheels wrote it: the run stops naming the edited file, since writing
    the others anew from it would carry the edit on."""
    entries = list(house.entries.values())
    files = _render_files(house.targets, entries, _installed(house.targets, entries, _users(entries)))
    sums = house.path / CHECKSUMS
    if not sums.is_file():
        msg = f"{WHEELHOUSE}/{CHECKSUMS}: missing; {_REBUILD}"
        raise WheelhouseError(msg)
    # manifest.json first: the derived files differ from what an edited one gives, yet it is the edited one.
    recorded = dict(_checksum_lines(sums.read_bytes().decode(errors="replace"))).get(MANIFEST)
    actual = sha256_file(house.path / MANIFEST)
    if recorded is not None and recorded != actual:
        msg = f"{WHEELHOUSE}/{MANIFEST}: edited after build-wheels wrote it: its sha256 is {actual}, {WHEELHOUSE}/{CHECKSUMS} records {recorded}; {_REBUILD}"
        raise WheelhouseError(msg)
    for name in sorted(n for n in files if n.startswith(f"{INSTALL_DIR}/")) + [MANIFEST, CHECKSUMS]:
        path = house.path / name
        if not path.is_file():
            msg = f"{WHEELHOUSE}/{name}: missing; {_REBUILD}"
            raise WheelhouseError(msg)
        if path.read_bytes() != files[name].encode():
            given = f"{WHEELHOUSE}/{MANIFEST} gives" if name != CHECKSUMS else f"the wheels and {WHEELHOUSE}/{MANIFEST} give"
            msg = f"{WHEELHOUSE}/{name}: not what {given}: {_difference(house.path, name, files[name])}; {_REBUILD}"
            raise WheelhouseError(msg)


def _users(entries: list[Entry]) -> dict[str, set[str]]:
    """Who installs which wheel file, as the entries record it."""
    services = sorted({s for e in entries for s in e.services})
    return {s: {e.file for e in entries if s in e.services} for s in services}


def _locked_pins(repo: Repository) -> dict[tuple[str, str], list[Pin]]:
    """Every pin of every service lock there is, and the installer's, by (name, version).
    The lock files as they are: a lock whose input moved is another command's concern."""
    pins: dict[tuple[str, str], list[Pin]] = {}
    locks = [parse_pins(path, repo.relative(path)) for path in (repo.lock_path(s) for s in repo.services) if path.is_file()]
    for pin in [*(p for lock in locks for p in lock.values()), repo.installer_pin()]:
        pins.setdefault((pin.name, pin.version), []).append(pin)
    return pins


def check_locked(repo: Repository, entries: Iterable[Entry]) -> None:
    """Every third-party wheel a current lock pins, held to the hashes requirements/*.txt lock
    for it, never to manifest.json's copy: a downloaded wheel's sha256 must be one of them (and
    the locked hash it records, its own); one recorded as built from its sdist must be of a pin
    that has a build lock of its own, from an sdist whose hash is locked. A wheel no lock pins
    now is not reused, so it is not asked about."""
    pins = _locked_pins(repo)
    for entry in sorted(entries, key=lambda e: e.file):
        origin = entry.origin
        locking = pins.get((canonicalize_name(entry.name), entry.version))
        if isinstance(origin, BuiltOrigin) or not locking:
            continue
        hashes = frozenset().union(*(p.hashes for p in locking))
        locks = ", ".join(sorted({p.source for p in locking}))
        what = f"{locks} {'locks' if len(locking) == 1 else 'lock'} for {locking[0].requirement_line()}"
        expected = ", ".join(f"sha256:{h}" for h in sorted(hashes))
        if isinstance(origin, DownloadedOrigin):
            if entry.sha256 not in hashes:
                msg = f"{WHEELHOUSE}/{entry.file}: sha256 {entry.sha256} is none of the hashes {what} ({expected}): not the wheel the lock pins; {_REBUILD}"
                raise WheelhouseError(msg)
            if origin.locked_hash != f"sha256:{entry.sha256}":
                msg = f"{WHEELHOUSE}/{MANIFEST}: {entry.file} records that it was downloaded as {origin.locked_hash}, but its sha256 is {entry.sha256}; {_REBUILD}"
                raise WheelhouseError(msg)
            continue
        build_lock = sdist_lock_file(locking[0].name, locking[0].version)
        claim = f"{WHEELHOUSE}/{MANIFEST}: {entry.file} is recorded as built from the sdist {origin.sdist} ({origin.locked_hash})"
        if not (repo.root / build_lock).is_file():
            msg = f"{claim}, but {locks} {'locks' if len(locking) == 1 else 'lock'} {locking[0].requirement_line()} as a wheel to download (it has no build lock {build_lock}); {_REBUILD}"
            raise WheelhouseError(msg)
        if origin.locked_hash.removeprefix("sha256:") not in hashes:
            msg = f"{claim}, which is none of the hashes {what} ({expected}); {_REBUILD}"
            raise WheelhouseError(msg)
        if origin.build_lock != build_lock:
            msg = f"{claim} with the build lock {origin.build_lock}, but its build lock is {build_lock}; {_REBUILD}"
            raise WheelhouseError(msg)


def render_wheelhouse(repo: Repository, entries: Iterable[Entry], source: firstparty.FileSource | None = None) -> dict[str, str]:
    """Every file of the wheelhouse that is not a wheel, by its path in the wheelhouse
    (install/<service>.txt, manifest.json, SHA256SUMS), exactly as it must read."""
    return _derive(repo, entries, source).files(repo.targets)


@dataclass(frozen=True)
class _Derived:
    entries: list[Entry]  # as manifest.json lists them: who uses each, which locks pin it
    installs: list[Install]  # what each service installs on each target

    def files(self, targets: tuple[Target, ...]) -> dict[str, str]:
        return _render_files(targets, self.entries, self.installs)


def _origins(repo: Repository, source: firstparty.FileSource | None) -> Callable[[Package], BuiltOrigin]:
    """The origin a first-party wheel built now would record, computed once per package."""
    source = source or firstparty.WorkingTree(repo.root)
    known: dict[str, BuiltOrigin] = {}

    def origin_of(package: Package) -> BuiltOrigin:
        if package.name not in known:
            known[package.name] = _first_party_origin(package, metadata.backend_of(repo, package), source)
        return known[package.name]

    return origin_of


def _derive(repo: Repository, entries: Iterable[Entry], source: firstparty.FileSource | None) -> _Derived:
    """What every service installs and what manifest.json must say, from the current locks,
    first-party sources and target, choosing among `entries` as build-wheels would."""
    pool = sorted(entries, key=lambda e: e.file)
    origin_of = _origins(repo, source)
    pin = repo.installer_pin()
    used: dict[str, Entry] = {}
    installs: dict[str, set[str]] = {service: set() for service in repo.services}
    installers: set[str] = set()
    for target in repo.targets:
        for service in repo.services:
            wheels = _service_wheels(repo, target, pool, service, origin_of)
            used |= {e.file: e for e in wheels}
            installs[service] |= {e.file for e in wheels}
        installer = _locked_wheel(pool, pin, target, sdist_build_environment(repo, pin))
        if installer is None:
            msg = f"{WHEELHOUSE}/{MANIFEST}: no wheel for {pin.requirement_line()}, the image installer {TOOLING_LOCK} pins, for {target.describe()}; {_REGENERATE}"
            raise WheelhouseError(msg)
        used[installer.file] = installer
        installers.add(installer.file)
    composed = _compose(used, installs, installers)
    return _Derived(composed, _installed(repo.targets, composed, installs))


def _service_wheels(repo: Repository, target: Target, pool: list[Entry], service: str, origin_of: Callable[[Package], BuiltOrigin]) -> list[Entry]:
    label = f"{WHEELHOUSE}/{install_path(repo.targets, target, service)}"
    wheels = []
    for package in repo.closure(service):
        found = _built_wheel(pool, package, origin_of(package), target)
        if found is None:
            msg = f"{label}: stale: no wheel in {WHEELHOUSE}/{MANIFEST} is built from the current {package.directory} ({package.name} {package.version}): its files, version, build backend or last commit changed; {_REGENERATE}"
            raise WheelhouseError(msg)
        wheels.append(found)
    for pin in repo.load_lock(service).values():
        found = _locked_wheel(pool, pin, target, sdist_build_environment(repo, pin))
        if found is None and any(_third_party_matches(e, pin) and e.runs_on(target) for e in pool):
            msg = f"{label}: stale: the wheel in {WHEELHOUSE}/{MANIFEST} of {pin.requirement_line()} was built from its sdist with another build lock than the current {sdist_lock_file(pin.name, pin.version)}; {_REGENERATE}"
            raise WheelhouseError(msg)
        if found is None:
            msg = f"{label}: stale: {repo.relative(repo.lock_path(service))} pins {pin.requirement_line()} and no wheel in {WHEELHOUSE}/{MANIFEST} has one of its locked hashes for {target.describe() if len(repo.targets) > 1 else 'the target'}; {_REGENERATE}"
            raise WheelhouseError(msg)
        wheels.append(found)
    return wheels


def _difference(directory: Path, name: str, expected: str) -> str:
    """What differs between a file of the wheelhouse and the text it must have, in one line."""
    path = directory / name
    label = f"{WHEELHOUSE}/{name}"
    if not path.is_file():
        return "missing"
    found = path.read_bytes().decode(errors="replace")
    problems: list[str] = []
    if name.startswith(f"{INSTALL_DIR}/"):
        try:
            pins = {n: (p.version, sorted(p.hashes)) for n, p in parse_pins(path, label).items()}
        except LockError as error:
            return f"line {str(error).removeprefix(label + ':')}"
        wanted = {n: (v, [h]) for n, v, h in _INSTALL_PIN.findall(expected)}
        problems = _differences(
            wanted,
            pins,
            missing=lambda n, pin: f"{n}=={pin[0]} (sha256 {pin[1][0]}) missing",
            extra=lambda n, pin: f"{n}=={pin[0]} not expected",
            changed=lambda n, want, have: f"{n}: expected =={want[0]} sha256 {want[1][0]}, found =={have[0]} sha256 {', '.join(have[1])}",
        )
    elif name == CHECKSUMS:
        problems = _differences(
            dict(_checksum_lines(expected)),
            dict(_checksum_lines(found)),
            missing=lambda n, _: f"{n} missing",
            extra=lambda n, _: f"{n} not expected",
            changed=lambda n, want, have: f"{n}: expected {want}, found {have}",
        )
    if problems:
        return "; ".join(problems)
    for number, (want, have) in enumerate(itertools.zip_longest(expected.splitlines(), found.splitlines()), start=1):
        if want != have:
            return f"line {number}: expected {_clip(want)}, found {_clip(have)}"
    return "differs in line endings or trailing bytes"


def _differences(
    wanted: dict[str, Any], found: dict[str, Any], *,
    missing: Callable[[str, Any], str], extra: Callable[[str, Any], str], changed: Callable[[str, Any, Any], str],
) -> list[str]:
    """One line per key that is missing from `found`, not expected there, or different."""
    lines = []
    for key in sorted(wanted.keys() | found.keys()):
        if key not in found:
            lines.append(missing(key, wanted[key]))
        elif key not in wanted:
            lines.append(extra(key, found[key]))
        elif found[key] != wanted[key]:
            lines.append(changed(key, wanted[key], found[key]))
    return lines


def open_wheelhouse(root: Path) -> Wheelhouse:
    """The current wheelhouse, checked on its own (see `verify`)."""
    return verify(_current(root))


def _load(directory: Path) -> Wheelhouse:
    """manifest.json, of the right shape, and every wheel it lists, with its recorded sha256."""
    targets, entries = _read_manifest(directory / MANIFEST)
    for entry in entries.values():
        wheel = directory / entry.file
        if not wheel.is_file():
            msg = f"{WHEELHOUSE}/{entry.file}: missing from the wheelhouse (expected sha256 {entry.sha256}); {_REBUILD}"
            raise WheelhouseError(msg)
        actual = sha256_file(wheel)
        if actual != entry.sha256:
            msg = f"{WHEELHOUSE}/{entry.file}: sha256 mismatch: expected {entry.sha256}, found {actual}; {_REBUILD}"
            raise WheelhouseError(msg)
    return Wheelhouse(directory, entries, targets)
