"""`invoke build-wheels` and `invoke verify-wheelhouse`: the wheelhouse, its install manifests and their checks.

Layout: `wheelhouse` is a symlink to one complete generation under `.wheelhouse/`.
A run builds the next generation beside it (hard-linking what did not change) and
switches the symlink in one rename, so a failed, interrupted or killed run leaves the
previous wheelhouse whole; an exclusive lock serializes concurrent runs.

Only the wheels and manifest.json's record of where each came from are facts. Everything
else (install/<service>.txt, SHA256SUMS, and who uses each wheel) is derived from them, the
current locks and the target by the render functions below: build-wheels writes what they
give, `verify_against` compares what is there with what they give, and a release ships
what they give, so the three cannot drift apart. Every wheel's tags are checked against
the target, so changing the target remakes each wheel it does not run.

Nothing a wheelhouse says of itself is trusted: it may be a CI cache another branch wrote.
A derived file that is not what manifest.json gives stops the run (it is never written anew
from what it describes); every third-party wheel is held to the hashes the locks pin, never to
manifest.json's copy; and a first-party or sdist-built wheel is taken as it is only in a
wheelhouse this clone wrote itself (`_trusted`): in any other, and in every release, it is
built again and must be byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Self

from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from . import thirdparty
from .build import compiled, firstparty, metadata, sdists
from .console import parallel, report
from .errors import LockError, RepositoryError, ToolError, WheelhouseError, describe_os_error
from .fsutil import exclusive_lock, fsync_tree, sha256_file, write_atomic
from .lockfile import Pin, format_pins, parse_pins
from .model import Package, Repository
from .requirements import INSTALLER, TOOLING_LOCK, lock_file, sdist_lock_file
from .target import Target
from .tools import git

WHEELHOUSE = "wheelhouse"
STORE = ".wheelhouse"
MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
INSTALL_DIR = "install"
FORMAT = 1
# What manifest.json records of each wheel: the JSON type of each field, and how to say it.
_ENTRY_FIELDS = {
    "name": (str, "a string"),
    "version": (str, "a string"),
    "file": (str, "a wheel file name"),
    "sha256": (str, "64 hex digits"),
    "origin": (dict, "an object"),
    "services": (list, "a list of service names"),
}
_TARGET_FIELDS = ("abi", "implementation", "platform", "python_version")
# One pin of an install manifest, as format_pins writes it.
_INSTALL_PIN = re.compile(r"^(\S+)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.MULTILINE)
_REBUILD = "rebuild with `invoke build-wheels --clean`"
_REGENERATE = "run `invoke build-wheels`"
# Under git's own directory of the work tree (never in a CI cache of the wheelhouse): the
# sha256 of the manifest.json of the generation this clone last wrote or checked by rebuilding.
_TRUST_RECORD = "wheelpipe-wheelhouse"


# -- where a wheel came from: manifest.json's "origin" of each wheel --------------------


@dataclass(frozen=True)
class _Recorded:
    """What every origin is in manifest.json: its kind and its own fields, no more."""

    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **_fields_json(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**_fields_from_json(cls, data))


@dataclass(frozen=True)
class BuiltOrigin(_Recorded):
    """A first-party wheel, built here from the staged files of one of the repository's packages."""

    kind: ClassVar[str] = "built"
    source: str  # the package's directory
    source_sha256: str  # the fingerprint of the staged files it was built from
    build_backend: str  # name==version of what provides its build-backend, from the build lock
    source_date_epoch: int


@dataclass(frozen=True)
class DownloadedOrigin(_Recorded):
    """A third-party wheel downloaded from an index, having one of its lock's hashes."""

    kind: ClassVar[str] = "downloaded"
    locked_hash: str  # sha256:<hex> of the wheel


@dataclass(frozen=True)
class SdistOrigin(_Recorded):
    """A third-party wheel built here from its sdist, which has one of its lock's hashes,
    in the build environment of the sdist's own build lock (requirements/sdists/<name>-<version>.txt)."""

    kind: ClassVar[str] = "built-from-sdist"
    sdist: str  # the sdist's file name
    locked_hash: str  # sha256:<hex> of the sdist
    build_lock: str  # the lock of its build environment
    build_environment: str  # sha256:<hex> of that lock's pins and hashes when it was built (environment.environment_digest)
    source_date_epoch: int


Origin = BuiltOrigin | DownloadedOrigin | SdistOrigin
ThirdPartyOrigin = DownloadedOrigin | SdistOrigin
_ORIGINS: dict[str, type[Origin]] = {kind.kind: kind for kind in (BuiltOrigin, DownloadedOrigin, SdistOrigin)}
# What an origin's fields hold in JSON (by their annotation), and how to say it.
_JSON_TYPES = {"str": (str, "a string"), "int": (int, "a number")}
# In manifest.json's origin object beside the origin itself: who uses the wheel (derived).
_LOCKS, _PURPOSE, _INSTALLER_PURPOSE = "locks", "purpose", "installer"


class _OriginShapeError(ValueError):
    """An origin object of manifest.json that is not what its kind needs (said in one line)."""


def origin_from_json(data: dict[str, Any]) -> Origin:
    """The origin an origin object of manifest.json records (its kind's fields, no more)."""
    kind = data.get("kind")
    if kind not in _ORIGINS:
        raise _OriginShapeError(f"expected the origin kind built, downloaded or built-from-sdist, found {_found(kind)}")
    return _ORIGINS[kind].from_json({k: v for k, v in data.items() if k != "kind"})


def _fields_json(origin: _Recorded) -> dict[str, Any]:
    return {f.name: getattr(origin, f.name) for f in fields(origin)}


def _fields_from_json(cls: type[_Recorded], data: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for item in fields(cls):
        value = data.get(item.name)
        kind, described = _JSON_TYPES[str(item.type)]
        if item.name == "locked_hash":
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(value)):
                raise _OriginShapeError(f"expected the origin locked_hash of a {cls.kind} wheel to be sha256:<64 hex>, found {_found(value)}")
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise _OriginShapeError(f"expected the origin {item.name} of a {cls.kind} wheel to be {described}, found {_found(value)}")
        values[item.name] = value
    extra = sorted(set(data) - set(values))
    if extra:
        raise _OriginShapeError(f"expected only the origin keys kind, {', '.join(values)} of a {cls.kind} wheel, found also {', '.join(extra)}")
    return values


@dataclass
class Entry:
    """One wheel in the wheelhouse, where it came from, and who uses it."""

    name: str
    version: str
    file: str
    sha256: str
    origin: Origin
    # Derived anew by each run, never a fact about the wheel (manifest.json writes the last
    # two into its origin object): the services that install it, the locks that pin it (of a
    # third-party wheel or the installer), whether it is the image installer.
    services: list[str] = field(default_factory=list)
    locks: list[str] | None = None
    installer: bool = False

    @property
    def tags(self) -> frozenset[Tag]:
        return parse_wheel_filename(self.file)[3]

    def runs_on(self, target: Target) -> bool:
        return bool(self.tags & target.accepts())

    def to_json(self) -> dict[str, Any]:
        origin = self.origin.to_json()
        if self.locks is not None:
            origin[_LOCKS] = list(self.locks)
        if self.installer:
            origin[_PURPOSE] = _INSTALLER_PURPOSE
        return {"name": self.name, "version": self.version, "file": self.file, "sha256": self.sha256, "origin": origin, "services": list(self.services)}


def _tag_list(tags: Iterable[Tag]) -> str:
    return ", ".join(sorted(map(str, tags)))


@dataclass
class Wheelhouse:
    """A complete generation of the wheelhouse, every wheel checked against manifest.json."""

    path: Path
    entries: dict[str, Entry]  # by file name
    target: Target  # what manifest.json records the wheels were made for

    def install_manifest(self, service: str) -> Path:
        return self.path / INSTALL_DIR / f"{service}.txt"

    def for_service(self, service: str) -> list[Entry]:
        return [e for e in self.entries.values() if service in e.services]

    def installer(self) -> Entry:
        # A wheelhouse made while another installer was the pin holds that one: not usable.
        found = [e for e in self.entries.values() if e.installer and e.name == INSTALLER]
        if not found:
            msg = f"{WHEELHOUSE}/{MANIFEST}: no installer ({INSTALLER}) wheel; run `invoke build-wheels`"
            raise WheelhouseError(msg)
        return found[0]

    def unpack_installer(self, directory: Path) -> Path:
        """The uv binary of the installer wheel (checked against the manifest when the
        wheelhouse was opened), written to directory/uv, executable; as the image build takes it."""
        with zipfile.ZipFile(self.path / self.installer().file) as wheel:
            (binary,) = [name for name in wheel.namelist() if name.endswith(".data/scripts/uv")]
            with wheel.open(binary) as source, (directory / "uv").open("wb") as target:
                shutil.copyfileobj(source, target)
        (directory / "uv").chmod(0o755)
        return directory / "uv"


@dataclass
class Result:
    wheelhouse: Wheelhouse
    built: list[str]
    downloaded: list[str]


@dataclass(frozen=True)
class Verified:
    """What `verify_against` found true of the wheelhouse, for the command to print."""

    wheelhouse: Wheelhouse
    target: Target
    services: tuple[str, ...]

    def lines(self) -> list[str]:
        manifests = ", ".join(f"{INSTALL_DIR}/{s}.txt" for s in self.services)
        locks = ", ".join(lock_file(s) for s in self.services)
        return [
            f"{WHEELHOUSE}/: {len(self.wheelhouse.entries)} wheels match their sha256 in {MANIFEST} and run on the target {self.target.describe()}",
            f"{WHEELHOUSE}/{manifests}: exactly what {locks} and the first-party sources give",
            f"{WHEELHOUSE}/{MANIFEST}, {CHECKSUMS}: exactly what the wheels and the locks give; no other file",
        ]


def open_wheelhouse(root: Path) -> Wheelhouse:
    """The current wheelhouse, checked on its own (see `verify`)."""
    return verify(_current(root))


def _current(root: Path) -> Path:
    link = root / WHEELHOUSE
    if not link.exists():
        msg = f"{WHEELHOUSE}/: missing; run `invoke build-wheels`"
        raise WheelhouseError(msg)
    return link.resolve()


def verify(directory: Path) -> Wheelhouse:
    """The wheelhouse in `directory`, checked without the repository: manifest.json well formed,
    every wheel there with its recorded sha256 and tags that the recorded target accepts, and
    every install manifest pinning wheels of this wheelhouse. `verify_against` checks the rest."""
    house = _load(directory)
    for entry in house.entries.values():
        _require_runs_on(entry, house.target, f"the target {MANIFEST} records,")
    by_hash = {e.sha256: e for e in house.entries.values()}
    for manifest in sorted((directory / INSTALL_DIR).glob("*.txt")):
        label = f"{WHEELHOUSE}/{INSTALL_DIR}/{manifest.name}"
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
        _require_runs_on(entry, repo.target, "the target")
    services = list(repo.services)
    for service in services:
        if not house.install_manifest(service).is_file():
            msg = f"{WHEELHOUSE}/{INSTALL_DIR}/{service}.txt: missing; {_REGENERATE}"
            raise WheelhouseError(msg)
    derived = _derive(repo, house.entries.values(), source)
    files = derived.files(repo.target)
    for service in derived.installs:
        name = f"{INSTALL_DIR}/{service}.txt"
        if house.install_manifest(service).read_bytes() != files[name].encode():
            where = f"{repo.relative(repo.lock_path(service))}, the first-party sources and {WHEELHOUSE}/{MANIFEST}"
            msg = f"{WHEELHOUSE}/{name}: differs from what {where} give: {_difference(house.path, name, files[name])}; {_REGENERATE}"
            raise WheelhouseError(msg)
    if house.target != repo.target:
        msg = f"{WHEELHOUSE}/{MANIFEST}: records the target {house.target.describe()}, but the target is {repo.target.describe()} (pyproject.toml [tool.wheelpipe.target]); {_REGENERATE}"
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
    return Verified(house, repo.target, tuple(services))


def _require_runs_on(entry: Entry, target: Target, whose: str) -> None:
    if not entry.runs_on(target):
        msg = f"{WHEELHOUSE}/{entry.file}: its tags {_tag_list(entry.tags)} do not run on {whose} {target.describe()}; {_REGENERATE}"
        raise WheelhouseError(msg)


def _load(directory: Path) -> Wheelhouse:
    """manifest.json, of the right shape, and every wheel it lists, with its recorded sha256."""
    target, entries = _read_manifest(directory / MANIFEST)
    for entry in entries.values():
        wheel = directory / entry.file
        if not wheel.is_file():
            msg = f"{WHEELHOUSE}/{entry.file}: missing from the wheelhouse (expected sha256 {entry.sha256}); {_REBUILD}"
            raise WheelhouseError(msg)
        actual = sha256_file(wheel)
        if actual != entry.sha256:
            msg = f"{WHEELHOUSE}/{entry.file}: sha256 mismatch: expected {entry.sha256}, found {actual}; {_REBUILD}"
            raise WheelhouseError(msg)
    return Wheelhouse(directory, entries, target)


def _read_manifest(path: Path) -> tuple[Target, dict[str, Entry]]:
    """manifest.json's target and entries; anything of another shape is one line, never a traceback."""

    def malformed(what: str) -> WheelhouseError:
        return WheelhouseError(f"{WHEELHOUSE}/{MANIFEST}: {what}; {_REBUILD}")

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise malformed("missing") from None
    except (OSError, ValueError) as error:
        raise malformed(f"unreadable ({error})") from None
    if not isinstance(data, dict):
        raise malformed(f"expected a JSON object, found {_found(data)}")
    if data.get("format") != FORMAT:
        raise malformed(f"format {data.get('format')!r}, expected {FORMAT}")
    if not {"services", "target", "wheels"} <= set(data):
        raise malformed(f"expected the keys format, services, target and wheels, found {', '.join(sorted(data))}")
    target = _read_target(data["target"], malformed)
    services = data["services"]
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise malformed(f'expected "services" to be a list of service names, found {_found(services)}')
    wheels = data["wheels"]
    if not isinstance(wheels, list):
        raise malformed(f'expected "wheels" to be a list of wheel entries, found {_found(wheels)}')
    entries: dict[str, Entry] = {}
    for index, item in enumerate(wheels):
        entry = _read_entry(item, f"wheels[{index}]", malformed)
        if entry.file in entries:
            raise malformed(f"wheels[{index}]: {entry.file} is listed twice")
        entries[entry.file] = entry
    return target, entries


def _read_target(value: object, malformed: Callable[[str], WheelhouseError]) -> Target:
    expected = f'expected "target" to be an object of the strings {", ".join(_TARGET_FIELDS)}'
    if not isinstance(value, dict) or sorted(value) != sorted(_TARGET_FIELDS) or not all(isinstance(v, str) for v in value.values()):
        raise malformed(f"{expected}, found {_found(value)}")
    try:
        return Target.from_table({key.replace("_", "-"): v for key, v in value.items()}, MANIFEST)
    except RepositoryError:
        raise malformed(f"{expected} (a 3.X python_version and a manylinux platform), found {_found(value)}") from None


def _read_entry(item: object, where: str, malformed: Callable[[str], WheelhouseError]) -> Entry:
    if not isinstance(item, dict):
        raise malformed(f"{where}: expected an object with the keys {', '.join(_ENTRY_FIELDS)}, found {_found(item)}")
    for key, (kind, described) in _ENTRY_FIELDS.items():
        if key not in item:
            raise malformed(f"{where}: expected the key {key!r} ({described}), found the keys {', '.join(sorted(item)) or 'none'}")
        if not isinstance(item[key], kind):
            raise malformed(f"{where}: expected {key!r} to be {described}, found {_found(item[key])}")
    extra = sorted(set(item) - set(_ENTRY_FIELDS))
    if extra:
        raise malformed(f"{where}: expected only the keys {', '.join(_ENTRY_FIELDS)}, found also {', '.join(extra)}")
    if not re.fullmatch(r"[0-9a-f]{64}", item["sha256"]):
        raise malformed(f"{where}: expected 'sha256' to be 64 hex digits, found {_found(item['sha256'])}")
    if not all(isinstance(s, str) for s in item["services"]):
        raise malformed(f"{where}: expected 'services' to be a list of service names, found {_found(item['services'])}")
    file = item["file"]
    try:
        name, version, _, _ = parse_wheel_filename(file)
        ok = "/" not in file and "\\" not in file and name == canonicalize_name(item["name"]) and version == Version(item["version"])
    except ValueError:  # InvalidWheelFilename and InvalidVersion both are
        ok = False
    if not ok:
        raise malformed(f"{where}: expected 'file' to be the wheel file name of {item['name']} {item['version']}, found {_found(file)}")
    recorded = dict(item["origin"])
    locks, purpose = recorded.pop(_LOCKS, None), recorded.pop(_PURPOSE, None)
    try:
        origin = origin_from_json(recorded)
    except _OriginShapeError as error:
        raise malformed(f"{where}: {error}") from None
    if locks is not None and not (isinstance(locks, list) and all(isinstance(lock, str) for lock in locks)):
        raise malformed(f"{where}: expected the origin locks to be a list of lock files, found {_found(locks)}")
    if purpose not in (None, _INSTALLER_PURPOSE):
        raise malformed(f"{where}: expected the origin purpose to be {_INSTALLER_PURPOSE!r} or absent, found {_found(purpose)}")
    return Entry(item["name"], item["version"], file, item["sha256"], origin, item["services"], locks, purpose == _INSTALLER_PURPOSE)


def _found(value: object) -> str:
    """A JSON value for a message: its type and, shortened, itself."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    if value is None:
        return "null"
    text = json.dumps(value)
    return f"{kinds.get(type(value), type(value).__name__)} {text if len(text) <= 60 else text[:57] + '...'}"


def check_intact(house: Wheelhouse) -> None:
    """Every derived file of the generation (install manifests, SHA256SUMS) exactly what its
    manifest.json gives, and manifest.json the file SHA256SUMS records. A difference means a file
    was edited after build-wheels wrote it: the run stops naming the edited file, since writing
    the others anew from it would carry the edit on."""
    entries = list(house.entries.values())
    files = _render_files(house.target, entries, _installed(entries, _users(entries)))
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


def _trust_record(root: Path) -> Path | None:
    """Where this clone records the wheelhouse it wrote: in git's own directory of the work
    tree, which no cache of the wheelhouse restores. None outside a git work tree."""
    try:
        found = git(root, "rev-parse", "--git-path", _TRUST_RECORD, check=False)
    except FileNotFoundError:
        return None
    return root / found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else None


def _trusted(root: Path, house: Wheelhouse) -> bool:
    """Whether this clone wrote (or checked by rebuilding) this very generation: its
    manifest.json, which names every wheel's sha256 (checked when it was opened), is the one
    recorded. A restored cache, another clone's wheelhouse or an edited manifest is not."""
    record = _trust_record(root)
    try:
        return record is not None and record.read_text().strip() == sha256_file(house.path / MANIFEST)
    except OSError:
        return False


def _record_trust(root: Path, house: Wheelhouse) -> None:
    record = _trust_record(root)
    if record is not None and record.parent.is_dir():
        write_atomic(record, sha256_file(house.path / MANIFEST) + "\n")


def _check_by_rebuild(repo: Repository, plan: _Plan, selected: list[str], old: Wheelhouse, source: firstparty.FileSource) -> None:
    """Every first-party and sdist-built wheel the plan reuses, built again and compared byte
    for byte: they are reproducible, so one that differs is not what its recorded inputs build
    (manifest.json records only what the wheel was made of, and anyone who can write the
    wheelhouse can write both). Downloaded wheels need no rebuild: their locks pin their hashes."""
    first_party: list[tuple[Package, BuiltOrigin]] = []
    sdist_built: list[Pin] = []
    kept = {e.file: e for e in plan.reuse.values()}
    pins = _locked_pins(repo)
    for file, entry in sorted(kept.items()):
        if isinstance(entry.origin, BuiltOrigin):
            package = repo.packages.get(entry.name)
            origin = _first_party_origin(package, metadata.backend_of(repo, package), source) if package else None
            if package is None or origin != entry.origin:
                users = _other_users(plan, selected, file) or entry.services
                msg = (
                    f"{WHEELHOUSE}/{file}: kept for service {', '.join(users)}, but its sources changed since it was built, so it cannot be "
                    f"checked against a build of them, and this wheelhouse is not one build-wheels wrote here; run `invoke build-wheels` without --service"
                )
                raise WheelhouseError(msg)
            first_party.append((package, origin))
        elif isinstance(entry.origin, SdistOrigin):
            locking = pins[(canonicalize_name(entry.name), entry.version)]  # check_locked saw it pinned
            sdist_built.append(replace(locking[0], hashes=frozenset().union(*(p.hashes for p in locking))))
    if not first_party and not sdist_built:
        return
    report.info(f"checking {len(first_party) + len(sdist_built)} wheel(s) the wheelhouse holds against a build of their recorded sources")
    held_by = {(e.name, e.version): e for e in kept.values()}
    with tempfile.TemporaryDirectory(prefix="wheelpipe-check-", dir=repo.root / STORE) as tmp:
        rebuilt = [e for _, e in _build_first_party(repo, first_party, Path(tmp), source, "checking")]
        rebuilt += [e for _, e in _fetch_third_party(repo, sdist_built, Path(tmp))]
        for made in rebuilt:
            held = held_by[(made.name, made.version)]
            if made.file != held.file or made.sha256 != held.sha256:
                what = f"{repo.packages[made.name].label} from {source.describe()}" if isinstance(held.origin, BuiltOrigin) else f"{held.name}=={held.version} from its locked sdist"
                msg = (
                    f"{WHEELHOUSE}/{held.file}: sha256 {held.sha256}, but building {what}, as {WHEELHOUSE}/{MANIFEST} records it was built, "
                    f"gives {made.file} with sha256 {made.sha256}: the wheel is not what its sources build; {_REBUILD}"
                )
                raise WheelhouseError(msg)


def render_wheelhouse(repo: Repository, entries: Iterable[Entry], source: firstparty.FileSource | None = None) -> dict[str, str]:
    """Every file of the wheelhouse that is not a wheel, by its path in the wheelhouse
    (install/<service>.txt, manifest.json, SHA256SUMS), exactly as it must read."""
    return _derive(repo, entries, source).files(repo.target)


def render_checksums(digests: Mapping[str, str]) -> str:
    """SHA256SUMS for `sha256sum -c`: one `<sha256>  <path>` line per file, sorted by path."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items()))


@dataclass(frozen=True)
class _Derived:
    entries: list[Entry]  # as manifest.json lists them: who uses each, which locks pin it
    installs: dict[str, list[Entry]]  # service -> every wheel it installs

    def files(self, target: Target) -> dict[str, str]:
        return _render_files(target, self.entries, self.installs)


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
    chosen = {service: _service_wheels(repo, pool, service, origin_of) for service in repo.services}
    pin = repo.installer_pin()
    installer = _locked_wheel(pool, pin, repo.target, sdist_build_environment(repo, pin))
    if installer is None:
        msg = f"{WHEELHOUSE}/{MANIFEST}: no wheel for {pin.requirement_line()}, the image installer {TOOLING_LOCK} pins; {_REGENERATE}"
        raise WheelhouseError(msg)
    used = {e.file: e for wheels in chosen.values() for e in wheels} | {installer.file: installer}
    installs = {service: {e.file for e in wheels} for service, wheels in chosen.items()}
    composed = _compose(used, installs, installer.file)
    return _Derived(composed, _installed(composed, installs))


def _service_wheels(repo: Repository, pool: list[Entry], service: str, origin_of: Callable[[Package], BuiltOrigin]) -> list[Entry]:
    label = f"{WHEELHOUSE}/{INSTALL_DIR}/{service}.txt"
    wheels = []
    for package in repo.closure(service):
        found = _built_wheel(pool, package, origin_of(package), repo.target)
        if found is None:
            msg = f"{label}: stale: no wheel in {WHEELHOUSE}/{MANIFEST} is built from the current {package.directory} ({package.name} {package.version}): its files, version, build backend or last commit changed; {_REGENERATE}"
            raise WheelhouseError(msg)
        wheels.append(found)
    for pin in repo.load_lock(service).values():
        found = _locked_wheel(pool, pin, repo.target, sdist_build_environment(repo, pin))
        if found is None and any(_third_party_matches(e, pin) and e.runs_on(repo.target) for e in pool):
            msg = f"{label}: stale: the wheel in {WHEELHOUSE}/{MANIFEST} of {pin.requirement_line()} was built from its sdist with another build lock than the current {sdist_lock_file(pin.name, pin.version)}; {_REGENERATE}"
            raise WheelhouseError(msg)
        if found is None:
            msg = f"{label}: stale: {repo.relative(repo.lock_path(service))} pins {pin.requirement_line()} and no wheel in {WHEELHOUSE}/{MANIFEST} has one of its locked hashes for the target; {_REGENERATE}"
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


def _checksum_lines(text: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        digest, separator, name = line.partition("  ")
        pairs.append((name, digest) if separator else (f"line {number} ({_clip(line)})", "unreadable"))
    return pairs


def _clip(line: str | None) -> str:
    if line is None:
        return "the end of the file"
    return repr(line if len(line) <= 80 else line[:77] + "...")


def _strays(directory: Path, allowed: set[str]) -> list[str]:
    """Every path under `directory` that is neither one of `allowed` nor a folder holding them."""
    folders = {Path(name).parent.as_posix() for name in allowed} - {"."}
    found = []
    for current, dirs, files in os.walk(directory):
        relative = Path(current).relative_to(directory)
        for name in list(dirs):
            path = (relative / name).as_posix()
            if path not in folders or os.path.islink(os.path.join(current, name)):
                found.append(f"{path}/")
                dirs.remove(name)
        found += [p for p in ((relative / name).as_posix() for name in files) if p not in allowed]
    return sorted(found)


@dataclass(frozen=True)
class ToBuild:
    """A first-party wheel a plan still has to build."""

    name: str  # the package's distribution name


@dataclass(frozen=True)
class ToFetch:
    """A third-party wheel a plan still has to download (or build from its sdist)."""

    name: str
    version: str


# A wheel in a plan: the file name of one already there, or one still to make.
Planned = str | ToBuild | ToFetch


@dataclass
class _Plan:
    reuse: dict[str, Entry] = field(default_factory=dict)  # new entries taken as they are
    build: list[tuple[Package, BuiltOrigin]] = field(default_factory=list)
    fetch: list[Pin] = field(default_factory=list)
    installs: dict[str, set[Planned]] = field(default_factory=dict)  # service -> its wheels
    installer_key: Planned = ""


def _resolve_installs(installs: dict[str, set[Planned]], made: dict[ToBuild | ToFetch, str]) -> dict[str, set[str]]:
    """Who installs which wheel file, once every wheel still to make is made (as `made` says)."""
    return {name: {_file_of(key, made) for key in keys} for name, keys in installs.items()}


def _file_of(key: Planned, made: dict[ToBuild | ToFetch, str]) -> str:
    return key if isinstance(key, str) else made[key]


def _plan(repo: Repository, selected: list[str], locks: dict[str, dict[str, Pin]], installer: Pin, old_entries: list[Entry], source: firstparty.FileSource) -> _Plan:
    """What to reuse from the current wheelhouse, build and download, and who needs what."""
    plan = _Plan()
    first_party_keys: dict[str, Planned] = {}
    for package in {p.name: p for name in selected for p in repo.closure(name)}.values():
        origin = _first_party_origin(package, metadata.backend_of(repo, package), source)
        found = _built_wheel(old_entries, package, origin, repo.target)
        if found:
            plan.reuse[found.file] = found
            first_party_keys[package.name] = found.file
        else:
            plan.build.append((package, origin))
            first_party_keys[package.name] = ToBuild(package.name)
    pins = thirdparty.merge_pins([*(pin for lock in locks.values() for pin in lock.values()), installer])
    third_party_keys: dict[tuple[str, str], Planned] = {}
    for key, pin in pins.items():
        found = _locked_wheel(old_entries, pin, repo.target, sdist_build_environment(repo, pin))
        if found:
            plan.reuse[found.file] = found
            third_party_keys[key] = found.file
        else:
            plan.fetch.append(pin)
            third_party_keys[key] = ToFetch(pin.name, pin.version)
    for name in selected:
        plan.installs[name] = {first_party_keys[p.name] for p in repo.closure(name)}
        plan.installs[name] |= {third_party_keys[(p.name, p.version)] for p in locks[name].values()}
    # Services not selected keep their part of the wheelhouse as it is.
    for entry in old_entries:
        for name in entry.services:
            if name in repo.services and name not in selected:
                plan.installs.setdefault(name, set()).add(entry.file)
                plan.reuse[entry.file] = entry
    plan.installer_key = third_party_keys[(installer.name, installer.version)]
    return plan


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
    return next((e for e in entries if e.name == package.name and e.version == package.version and e.origin == origin and e.runs_on(target)), None)


def _locked_wheel(entries: Iterable[Entry], pin: Pin, target: Target, build_environment: str | None) -> Entry | None:
    """The first wheel among `entries` with one of the pin's locked hashes, if it runs on the
    target; one built from its sdist only if built in the build environment of now (the digest
    of the pin's own build lock, None without one), as building it now would be."""
    return next((e for e in entries if _third_party_matches(e, pin) and e.runs_on(target) and _built_in(e, build_environment)), None)


def _built_in(entry: Entry, build_environment: str | None) -> bool:
    return not isinstance(entry.origin, SdistOrigin) or entry.origin.build_environment == build_environment


def sdist_build_environment(repo: Repository, pin: Pin) -> str | None:
    """The digest of the environment the pin's sdist builds in now: its own build lock's; None
    when it has none (a pin the index has a wheel of)."""
    lock = sdists.sdist_lock(repo.root, pin)
    return lock.digest if lock else None


@contextlib.contextmanager
def held(root: Path) -> Iterator[None]:
    """The wheelhouse to this run alone. build-wheels holds it while it makes a generation; a
    release from building its wheels until its archive is written, so that no other run
    (`build-wheels --clean`, say) prunes the generation it reads, or writes dist/ beside it."""

    def waiting() -> None:
        report.info("another run (build-wheels or a release) holds the wheelhouse; waiting for it to finish")

    with exclusive_lock(root / STORE / ".lock", waiting):
        yield


def build_wheels(
    repo: Repository,
    *,
    service: str | None = None,
    clean: bool = False,
    source: firstparty.FileSource | None = None,
    check_rebuilds: bool = False,
) -> Result:
    """Refresh the wheelhouse; first-party wheels come from `source` (default: the working tree).
    A first-party or sdist-built wheel kept from the current wheelhouse is built again and
    compared when this clone did not write that wheelhouse, and always with `check_rebuilds`."""
    source = source or firstparty.WorkingTree(repo.root)
    selected = repo.select_services(service)
    locks = {name: repo.load_lock(name) for name in selected}
    installer = repo.installer_pin()
    store = repo.root / STORE
    report.step(f"building the wheelhouse for {', '.join(selected)} ({repo.target.describe()})")

    with held(repo.root):
        _remove_leftovers(repo.root, store)
        link = repo.root / WHEELHOUSE
        if link.exists() and not link.is_symlink():
            msg = f"{WHEELHOUSE}/ is a plain directory, not a wheelhouse made by `invoke build-wheels`; move it away"
            raise WheelhouseError(msg)
        # A wheel the target does not run, or one a lock no longer pins, is made anew below;
        # a wheel or derived file that is not what was written, or a third-party wheel whose
        # hash no lock pins, stops the run.
        previous = link.resolve() if link.exists() else None
        old = _load(previous) if previous and not clean else None
        if old is not None:
            check_intact(old)
            check_locked(repo, old.entries.values())
        old_entries = list(old.entries.values()) if old else []

        plan = _plan(repo, selected, locks, installer, old_entries, source)
        installs, installer_key = plan.installs, plan.installer_key
        _refuse_keeping_off_target(repo, plan, selected)
        checked = old is not None and (check_rebuilds or not _trusted(repo.root, old))
        if old is not None and checked:
            _check_by_rebuild(repo, plan, selected, old, source)

        if old and not plan.build and not plan.fetch:
            installs_now = _resolve_installs(installs, {})
            entries = _compose(plan.reuse, installs_now, _file_of(installer_key, {}))
            # Up to date means every file it would write is there as it would write it, and
            # nothing else is.
            files = _render_files(repo.target, entries, _installed(entries, installs_now))
            unchanged = all((old.path / name).is_file() and (old.path / name).read_bytes() == text.encode() for name, text in files.items())
            if unchanged and not _strays(old.path, set(files) | {e.file for e in entries}):
                if checked:
                    _record_trust(repo.root, old)
                report.info("wheelhouse is up to date: nothing to build, nothing to download")
                return Result(old, [], [])

        for line in _left_out(old) if old else []:
            report.info(line)
        token = secrets.token_hex(4)
        partial = store / f"partial-{token}"
        partial.mkdir(parents=True)
        try:
            if old is not None:  # else nothing is reused
                for entry in plan.reuse.values():
                    os.link(old.path / entry.file, partial / entry.file)
            built = _build_first_party(repo, plan.build, partial, source)
            _refuse(partial, _off_target_build(repo, built))
            fetched = _fetch_third_party(repo, plan.fetch, partial)
            wheels_made: list[tuple[ToBuild | ToFetch, Entry]] = [*built, *fetched]
            _refuse(partial, _replacing_for_others(repo, plan, selected, wheels_made))
            new = dict(plan.reuse)
            made: dict[ToBuild | ToFetch, str] = {}
            for key, entry in wheels_made:
                new[entry.file] = entry
                made[key] = entry.file
            installed = _resolve_installs(installs, made)
            entries = _compose(new, installed, _file_of(installer_key, made))
            for name in selected:
                wheels = {e.name: partial / e.file for e in new.values() if e.name in locks[name] and e.version == locks[name][e.name].version}
                own = {p.name for p in repo.closure(name)}
                built_here = {e.name: partial / e.file for e in new.values() if e.name in own and isinstance(e.origin, BuiltOrigin)}
                thirdparty.check_closure(repo, name, locks[name], wheels, built_here)
            _write_metadata(repo, partial, entries, installed)
            fsync_tree(partial)
            generation = store / f"gen-{token}"
            partial.rename(generation)
        except BaseException:
            # A failed or interrupted run leaves nothing behind, not even an invisible partial.
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _switch_or_undo(repo.root, link, generation)
        # The previous generation stays (--clean too): a reader that resolved the old symlink,
        # an image build or a release's archive, may still use it.
        _prune(store, keep={generation.name, previous.name if previous else ""})
        # Every entry's sha256 was taken in this run from the very file now in the generation
        # (reused ones by _load above, new ones as they were written): no second read.
        result = Result(Wheelhouse(generation, {e.file: e for e in entries}, repo.target), [e.file for _, e in built], [e.file for _, e in fetched])
        _record_trust(repo.root, result.wheelhouse)
        report.info(f"wheelhouse ready: built {len(result.built)}, downloaded {len(result.downloaded)}, {len(entries)} wheels in {WHEELHOUSE}/")
        return result


def _build_first_party(
    repo: Repository, jobs: list[tuple[Package, BuiltOrigin]], partial: Path, source: firstparty.FileSource, doing: str = "building",
) -> list[tuple[ToBuild, Entry]]:
    def one(job: tuple[Package, BuiltOrigin]) -> tuple[ToBuild, Entry]:
        package, origin = job
        report.info(f"{doing} {package.label} {package.version} from {source.describe()} with {origin.build_backend}")
        with tempfile.TemporaryDirectory(prefix="wheelpipe-build-") as tmp:
            python = metadata.python_for(repo, package)
            try:
                built = firstparty.build_wheel(package, source, origin.source_date_epoch, Path(tmp), python)
            except ToolError as error:
                raise metadata.explained(package, error) from None
            # The fingerprint of what was staged, should a file have changed since planning.
            origin = replace(origin, source_sha256=built.source_sha256)
            # Compiled code: built for the target's interpreter, checked and tagged for its platform.
            wheel = compiled.for_target(repo, package, source, built, origin.source_date_epoch, Path(tmp))
            name, version, _, _ = parse_wheel_filename(wheel.name)
            if name != package.name or str(version) != package.version:
                msg = f"{package.label}: the build produced {wheel.name}, expected {package.name} {package.version}"
                raise WheelhouseError(msg)
            final = partial / wheel.name
            shutil.move(wheel, final)
        return ToBuild(package.name), Entry(package.name, package.version, final.name, sha256_file(final), origin)

    # Two workers: the backends spend most of their time starting up, not computing.
    return parallel(one, jobs, 2)


def _fetch_third_party(repo: Repository, pins: list[Pin], partial: Path) -> list[tuple[ToFetch, Entry]]:
    if not pins:
        return []
    with tempfile.TemporaryDirectory(prefix="wheelpipe-fetch-", dir=partial.parent) as tmp:
        results = []
        for item in thirdparty.fetch(pins, Path(tmp), repo.indexes, repo.target, lambda pin: sdists.sdist_lock(repo.root, pin)):
            final = partial / item.wheel.name
            item.wheel.rename(final)
            origin: ThirdPartyOrigin = DownloadedOrigin(locked_hash=f"sha256:{sha256_file(final)}")
            if item.sdist and item.source_date_epoch is not None:  # thirdparty sets both, or neither
                assert item.build_lock is not None  # thirdparty builds no sdist without it
                origin = SdistOrigin(
                    sdist=item.sdist.name,
                    locked_hash=f"sha256:{sha256_file(item.sdist)}",
                    build_lock=item.build_lock.label,
                    build_environment=item.build_lock.digest,
                    source_date_epoch=item.source_date_epoch,
                )
            entry = Entry(item.pin.name, item.pin.version, final.name, sha256_file(final), origin)
            results.append((ToFetch(item.pin.name, item.pin.version), entry))
        return results


def _compose(entries: dict[str, Entry], installs: dict[str, set[str]], installer_file: str) -> list[Entry]:
    """Final entries: who uses each wheel and which lock pinned it, derived, never stored twice."""
    composed = []
    for file, entry in sorted(entries.items()):
        services = sorted(name for name, files in installs.items() if file in files)
        locks = None if isinstance(entry.origin, BuiltOrigin) else [lock_file(name) for name in services]
        installer = file == installer_file
        if installer:
            locks = [*(locks or []), TOOLING_LOCK]
        if services or installer:
            composed.append(Entry(entry.name, entry.version, file, entry.sha256, entry.origin, services, locks, installer))
    return composed


def _manifest_json(target: Target, entries: list[Entry]) -> str:
    document = {
        "format": FORMAT,
        "target": asdict(target),
        "services": sorted({s for e in entries for s in e.services}),
        "wheels": [e.to_json() for e in entries],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _install_header(service: str) -> str:
    return (
        f"Install manifest of the {service} service: every distribution it needs, pinned to the\n"
        "exact wheel file in this wheelhouse. Generated by `invoke build-wheels`; do not edit.\n"
        f"pip install --no-index --find-links wheelhouse --require-hashes --only-binary :all: -r wheelhouse/install/{service}.txt\n"
    )


def _install_text(service: str, wheels: list[Entry]) -> str:
    return format_pins([(e.name, e.version, e.sha256) for e in wheels], _install_header(service))


def _installed(entries: list[Entry], installs: dict[str, set[str]]) -> dict[str, list[Entry]]:
    return {service: [e for e in entries if e.file in files] for service, files in sorted(installs.items())}


def _render_files(target: Target, entries: list[Entry], installs: dict[str, list[Entry]]) -> dict[str, str]:
    """Every file of a generation but the wheels: install manifests, manifest.json, SHA256SUMS."""
    files = {f"{INSTALL_DIR}/{service}.txt": _install_text(service, wheels) for service, wheels in installs.items()}
    files[MANIFEST] = _manifest_json(target, entries)
    digests = {e.file: e.sha256 for e in entries} | {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    files[CHECKSUMS] = render_checksums(digests)
    return files


def _write_metadata(repo: Repository, directory: Path, entries: list[Entry], installs: dict[str, set[str]]) -> None:
    for name, text in _render_files(repo.target, entries, _installed(entries, installs)).items():
        write_atomic(directory / name, text)


def _left_out(old: Wheelhouse) -> list[str]:
    """The current generation's stray files, one line each: the next generation carries none
    over. (Its derived files were checked intact before: a damaged one stops the run.)"""
    entries = list(old.entries.values())
    files = _render_files(old.target, entries, _installed(entries, _users(entries)))
    return [f"{WHEELHOUSE}/{stray}: not part of the wheelhouse; left out of the new generation" for stray in _strays(old.path, set(files) | set(old.entries))]


def _other_users(plan: _Plan, selected: list[str], file: str) -> list[str]:
    return sorted(s for s, files in plan.installs.items() if s not in selected and file in files)


def _refuse_keeping_off_target(repo: Repository, plan: _Plan, selected: list[str]) -> None:
    """--service keeps the other services' wheels as they are, which a wheel the target no
    longer runs cannot be: that takes a build of every service."""
    for file, entry in sorted(plan.reuse.items()):
        users = _other_users(plan, selected, file)
        if users and not entry.runs_on(repo.target):
            msg = f"{WHEELHOUSE}/{file}: service {', '.join(users)} installs it, but its tags {_tag_list(entry.tags)} do not run on the target {repo.target.describe()}; run `invoke build-wheels` without --service to make every service's wheels for the target"
            raise WheelhouseError(msg)


def _off_target_build(repo: Repository, built: list[tuple[ToBuild, Entry]]) -> str | None:
    for key, entry in built:
        if not entry.runs_on(repo.target):
            package = repo.packages[key.name]
            return f"{package.label}: the build produced {entry.file}, whose tags {_tag_list(entry.tags)} do not run on the target {repo.target.describe()} (pyproject.toml [tool.wheelpipe.target])"
    return None


def _replacing_for_others(repo: Repository, plan: _Plan, selected: list[str], made: list[tuple[ToBuild | ToFetch, Entry]]) -> str | None:
    """A wheel made for the selected services that has the file name, but not the bytes, of one
    another service installs: keeping both is impossible, and replacing it would change what
    that service installs."""
    for key, entry in made:
        kept = plan.reuse.get(entry.file)
        users = _other_users(plan, selected, entry.file)
        if kept is None or not users or kept.sha256 == entry.sha256:
            continue
        if isinstance(key, ToBuild):
            package = repo.packages[key.name]
            what, fix = package.label, f"bump the version in {package.directory}/pyproject.toml"
        else:
            what, fix = f"{key.name}=={key.version}", f"bump the version of {entry.name}"
        return (
            f"{what}: the new {entry.file} (sha256 {entry.sha256}) would replace the one service {', '.join(users)} "
            f"installs (sha256 {kept.sha256}); run `invoke build-wheels` without --service, or {fix}"
        )
    return None


def _refuse(partial: Path, message: str | None) -> None:
    """Stop before the next generation becomes visible, leaving nothing of it behind."""
    if message:
        shutil.rmtree(partial, ignore_errors=True)
        raise WheelhouseError(message)


def _switch(link: Path, generation: Path) -> None:
    """Point the wheelhouse symlink at the new generation in one rename."""
    tmp = link.with_name(f".{link.name}.{generation.name}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(generation.relative_to(link.parent))
    os.replace(tmp, link)


def _switch_or_undo(root: Path, link: Path, generation: Path) -> None:
    """_switch, or else (a root made immutable or read-only after the build began) the new
    generation and the half-made link removed, and one line saying what happened and what
    is left: a failed switch leaves no whole generation behind unnamed."""
    try:
        _switch(link, generation)
    except OSError as error:
        reason = describe_os_error(error, root)
        stranded = link.with_name(f".{link.name}.{generation.name}")
        with contextlib.suppress(OSError):
            stranded.unlink(missing_ok=True)
        shutil.rmtree(generation, ignore_errors=True)
        before = "the previous wheelhouse is intact" if link.is_symlink() else "no wheelhouse was made"
        left = [path.relative_to(root).as_posix() for path in (generation, stranded) if os.path.lexists(path)]
        after = f"left behind (remove by hand): {', '.join(left)}" if left else "nothing of the new one is left"
        msg = f"{WHEELHOUSE}: cannot point it at the new generation ({reason}); {before}, {after}"
        raise WheelhouseError(msg) from None


def _remove_leftovers(root: Path, store: Path) -> None:
    """Partial generations of killed runs never become visible; remove them."""
    for path in store.glob("partial-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in [*store.glob("wheelpipe-fetch-*"), *store.glob("wheelpipe-check-*")]:
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(f".{WHEELHOUSE}.gen-*"):
        path.unlink(missing_ok=True)


def _prune(store: Path, keep: set[str]) -> None:
    # The previous generation stays: a reader that resolved the old symlink may still use it.
    for path in store.glob("gen-*"):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
