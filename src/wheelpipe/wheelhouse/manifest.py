"""manifest.json, SHA256SUMS and the install manifests: the wheelhouse's record of its wheels (Entry, their origins) and the files derived from it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..errors import RepositoryError, WheelhouseError
from ..lockfile import format_pins
from ..requirements import INSTALLER, TOOLING_LOCK, lock_file
from ..target import Target

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


def per_target_path(targets: tuple[Target, ...], target: Target, directory: str, name: str) -> str:
    """<directory>/<name> when the repository has one target (as it always was), else
    <directory>/<machine>/<name> for each of them."""
    return f"{directory}/{name}" if len(targets) == 1 else f"{directory}/{target.machine}/{name}"


def install_path(targets: tuple[Target, ...], target: Target, service: str) -> str:
    """Where in the wheelhouse (and a release) the service's install manifest for the target is."""
    return per_target_path(targets, target, INSTALL_DIR, f"{service}.txt")


@dataclass
class Wheelhouse:
    """A complete generation of the wheelhouse, every wheel checked against manifest.json."""

    path: Path
    entries: dict[str, Entry]  # by file name
    targets: tuple[Target, ...]  # what manifest.json records the wheels were made for

    def install_manifest(self, service: str, target: Target) -> Path:
        return self.path / install_path(self.targets, target, service)

    def for_service(self, service: str) -> list[Entry]:
        return [e for e in self.entries.values() if service in e.services]

    def installer(self, target: Target) -> Entry:
        """The installer (uv) wheel for the target: one per architecture, it is compiled."""
        # A wheelhouse made while another installer was the pin holds that one: not usable.
        found = [e for e in self.entries.values() if e.installer and e.name == INSTALLER and e.runs_on(target)]
        if not found:
            msg = f"{WHEELHOUSE}/{MANIFEST}: no installer ({INSTALLER}) wheel for {target.describe()}; run `invoke build-wheels`"
            raise WheelhouseError(msg)
        chosen = preferred(target, found)
        assert chosen is not None  # every one of `found` runs on the target
        return chosen

    def unpack_installer(self, directory: Path, target: Target) -> Path:
        """The uv binary of the target's installer wheel (checked against the manifest when the
        wheelhouse was opened), written to directory/uv, executable; as the image build takes it."""
        with zipfile.ZipFile(self.path / self.installer(target).file) as wheel:
            (binary,) = [name for name in wheel.namelist() if name.endswith(".data/scripts/uv")]
            with wheel.open(binary) as source, (directory / "uv").open("wb") as written:
                shutil.copyfileobj(source, written)
        (directory / "uv").chmod(0o755)
        return directory / "uv"


def _read_manifest(path: Path) -> tuple[tuple[Target, ...], dict[str, Entry]]:
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
    # One target as "target" (as it always was), several as the list "targets".
    if not {"services", "wheels"} <= set(data) or ("target" in data) == ("targets" in data):
        raise malformed(f"expected the keys format, services, target (or targets) and wheels, found {', '.join(sorted(data))}")
    targets = _read_targets(data, malformed)
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
    return targets, entries


def _read_targets(data: dict[str, Any], malformed: Callable[[str], WheelhouseError]) -> tuple[Target, ...]:
    if "target" in data:
        return (_read_target(data["target"], malformed),)
    value = data["targets"]
    if not isinstance(value, list) or len(value) < 2:
        raise malformed(f'expected "targets" to be a list of two or more target objects, found {_found(value)}')
    targets = tuple(_read_target(item, malformed) for item in value)
    machines = [t.machine for t in targets]
    if len(set(machines)) != len(machines):
        raise malformed(f'expected "targets" to name each architecture once, found {", ".join(machines)}')
    return targets


def _read_target(value: object, malformed: Callable[[str], WheelhouseError]) -> Target:
    expected = f'expected "target" to be an object of the strings {", ".join(_TARGET_FIELDS)}'
    if not isinstance(value, dict) or sorted(value) != sorted(_TARGET_FIELDS) or not all(isinstance(v, str) for v in value.values()):
        raise malformed(f"{expected}, found {_found(value)}")
    try:
        return Target.from_table({key.replace("_", "-"): v for key, v in value.items()}, MANIFEST)
    except RepositoryError:
        raise malformed(f"{expected} (a 3.X python_version and a manylinux platform), found {_found(value)}") from None


def _read_entry(item: object, where: str, malformed: Callable[[str], WheelhouseError]) -> Entry:  # noqa: C901 - one check per field of a manifest entry, each a one-line error naming it
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


def render_checksums(digests: Mapping[str, str]) -> str:
    """SHA256SUMS for `sha256sum -c`: one `<sha256>  <path>` line per file, sorted by path."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items()))


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


def _manifest_json(targets: tuple[Target, ...], entries: list[Entry]) -> str:
    recorded: dict[str, Any] = {"target": asdict(targets[0])} if len(targets) == 1 else {"targets": [asdict(t) for t in targets]}
    document = {
        "format": FORMAT,
        **recorded,
        "services": sorted({s for e in entries for s in e.services}),
        "wheels": [e.to_json() for e in entries],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _install_header(service: str, path: str, target: Target, several: bool) -> str:
    on = f" on {target.platform}" if several else ""
    return (
        f"Install manifest of the {service} service{on}: every distribution it needs, pinned to the\n"
        "exact wheel file in this wheelhouse. Generated by `invoke build-wheels`; do not edit.\n"
        f"pip install --no-index --find-links wheelhouse --require-hashes --only-binary :all: -r wheelhouse/{path}\n"
    )


@dataclass(frozen=True)
class Install:
    """What one service installs on one target: the wheel of each distribution it needs."""

    service: str
    target: Target
    path: str  # in the wheelhouse (install_path)
    wheels: tuple[Entry, ...]


def _install_text(install: Install, several: bool) -> str:
    header = _install_header(install.service, install.path, install.target, several)
    return format_pins([(e.name, e.version, e.sha256) for e in install.wheels], header)


def _render_files(targets: tuple[Target, ...], entries: list[Entry], installs: list[Install]) -> dict[str, str]:
    """Every file of a generation but the wheels: install manifests, manifest.json, SHA256SUMS."""
    files = {install.path: _install_text(install, len(targets) > 1) for install in installs}
    files[MANIFEST] = _manifest_json(targets, entries)
    digests = {e.file: e.sha256 for e in entries} | {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    files[CHECKSUMS] = render_checksums(digests)
    return files


def _compose(entries: dict[str, Entry], installs: dict[str, set[str]], installer_files: set[str]) -> list[Entry]:
    """Final entries: who uses each wheel and which lock pinned it, derived, never stored twice."""
    composed = []
    for file, entry in sorted(entries.items()):
        services = sorted(name for name, files in installs.items() if file in files)
        locks = None if isinstance(entry.origin, BuiltOrigin) else [lock_file(name) for name in services]
        installer = file in installer_files
        if installer:
            locks = [*(locks or []), TOOLING_LOCK]
        if services or installer:
            composed.append(Entry(entry.name, entry.version, file, entry.sha256, entry.origin, services, locks, installer))
    return composed


def _installed(targets: tuple[Target, ...], entries: list[Entry], installs: dict[str, set[str]]) -> list[Install]:
    """Each service's install manifest on each target: of the wheels it installs (on any
    target), for each distribution the one the target's interpreter prefers (a pure wheel serves
    every target; a compiled one only its own platform's). A wheel no target runs stays in
    each, as it was written, for the checks of its tags to name it."""
    result = []
    stray = {e.file for e in entries if not any(e.runs_on(t) for t in targets)}
    for target in targets:
        for service, files in sorted(installs.items()):
            by_name: dict[str, list[Entry]] = {}
            for entry in (e for e in entries if e.file in files):
                by_name.setdefault(entry.name, []).append(entry)
            picked = (preferred(target, group) or next((e for e in group if e.file in stray), None) for group in by_name.values())
            chosen = {entry.file for entry in picked if entry is not None}
            wheels = tuple(e for e in entries if e.file in chosen)
            result.append(Install(service, target, install_path(targets, target, service), wheels))
    return result


def preferred(target: Target, entries: Iterable[Entry]) -> Entry | None:
    """Of wheels of one distribution, the one the target's interpreter prefers (its most specific
    tag; the file name breaks a tie), None when none runs there."""
    priority = target.tag_priority()
    running = [e for e in entries if e.runs_on(target)]
    return min(running, key=lambda e: (min(priority.get(tag, len(priority)) for tag in e.tags), e.file)) if running else None
