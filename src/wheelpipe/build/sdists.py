"""Building a locked sdist into a reproducible wheel, with locked build requirements.

Each sdist-only dependency has a build lock of its own, requirements/sdists/<name>-<version>.txt
(written by `invoke lock` from the [build-system] requires in the sdist's pyproject.toml), so
an old sdist builds with the tools it names (grpcio 1.37's setup.py imports pkg_resources,
which a current setuptools no longer has), whatever the others or the first-party packages
need. It is built in an environment of that lock (environment.py), on this host or in the
target's builder (runner.py). SOURCE_DATE_EPOCH comes from the sdist itself and the wheel's
zip is rewritten in a canonical form, so two builds of one sdist give byte-identical wheels.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyproject_hooks
from packaging.requirements import InvalidRequirement, Requirement

from ..errors import LockError, WheelhouseError
from ..index import Indexes
from ..lockfile import Pin, parse_pins
from ..model import LEGACY_BUILD_SYSTEM, BuildSystem
from ..requirements import sdist_lock_file
from ..target import Target
from .environment import BuildLock, environment_digest, require_locked, run_backend
from .runner import BuilderSettings, where_to_build

# Zip archives cannot store times before 1980.
_ZIP_EPOCH = 315532800


@dataclass(frozen=True)
class Built:
    wheel: Path
    source_date_epoch: int
    built_in: str = "this host"  # or the builder image, as `name@sha256:id`


def _top(archive: tarfile.TarFile, sdist: Path) -> str:
    roots = {PurePosixPath(m.name).parts[0] for m in archive.getmembers() if m.name not in ("", ".")}
    if len(roots) != 1:
        msg = f"{sdist.name}: expected one top-level directory in the sdist, found {len(roots)}"
        raise WheelhouseError(msg)
    return roots.pop()


def build_system(sdist: Path) -> BuildSystem:
    """The [build-system] table of the sdist's pyproject.toml (PEP 517's fallback without one)."""
    try:
        with tarfile.open(sdist) as archive:
            member = archive.getmember(f"{_top(archive, sdist)}/pyproject.toml")
            extracted = archive.extractfile(member)
            if extracted is None:
                raise tarfile.TarError("pyproject.toml is not a file")
            data = tomllib.loads(extracted.read().decode())
    except KeyError:
        data = {}
    except (tarfile.TarError, OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        msg = f"{sdist.name}: cannot read its pyproject.toml ({error})"
        raise WheelhouseError(msg) from None
    table = data.get("build-system") or {}
    backend = table.get("build-backend", LEGACY_BUILD_SYSTEM.backend)
    lines = table.get("requires", [str(r) for r in LEGACY_BUILD_SYSTEM.requires])
    try:
        requires = tuple(Requirement(line) for line in lines)
    except (InvalidRequirement, TypeError):
        msg = f"{sdist.name}: [build-system] requires must be a list of requirements, found {lines!r}"
        raise WheelhouseError(msg) from None
    return BuildSystem(str(backend), requires, tuple(table.get("backend-path", ())))


def source_date_epoch(sdist: Path) -> int:
    """The newest time stamp in the sdist: the same for everyone who builds it."""
    with tarfile.open(sdist) as archive:
        newest = max((int(m.mtime) for m in archive.getmembers()), default=_ZIP_EPOCH)
    return max(newest, _ZIP_EPOCH)


@dataclass(frozen=True)
class SdistLock:
    """The build lock of one sdist-only pin: requirements/sdists/<name>-<version>.txt."""

    label: str
    pins: dict[str, Pin]

    @property
    def digest(self) -> str:
        return environment_digest(self.pins)


def sdist_lock(root: Path, pin: Pin) -> SdistLock | None:
    """The pin's own build lock in the repository at `root`; None when there is none."""
    label = sdist_lock_file(pin.name, pin.version)
    path = root / label
    return SdistLock(label, parse_pins(path, label)) if path.is_file() else None


def build(
    sdist: Path,
    pin: Pin,
    dest: Path,
    target: Target,
    build_lock: SdistLock | None,
    indexes: Indexes,
    builder: BuilderSettings | None = None,
) -> Built:
    """Build `sdist` into a canonical wheel in `dest` with its own locked build requirements,
    on this host when it matches the target, else in the target's builder image."""
    system = build_system(sdist)
    if build_lock is None:
        msg = f"{sdist_lock_file(pin.name, pin.version)}: missing, but {pin.requirement_line()} is built from its sdist with it; run `invoke lock`"
        raise LockError(msg)
    label, pins = build_lock.label, build_lock.pins
    where = where_to_build(pin.requirement_line(), "from its sdist", target, builder or BuilderSettings.from_environment())
    require_locked(system.requires, pins, where.markers, lambda r: f"{pin.requirement_line()} needs to build {r}", label=label)
    epoch = source_date_epoch(sdist)
    with tempfile.TemporaryDirectory(prefix="wheelpipe-sdist-") as tmp:
        work = Path(tmp)
        with tarfile.open(sdist) as archive:
            top = _top(archive, sdist)
            archive.extractall(work / "src", filter="data")
        try:
            wheel = run_backend(
                where, work, work / "src" / top, system, BuildLock(pins, indexes, target, label), epoch, f"building a wheel from {sdist.name}",
                check_requires=lambda dynamic: require_locked(dynamic, pins, where.markers, lambda r: f"{pin.requirement_line()} its backend asks for {r}", label=label),
            )
        except pyproject_hooks.BackendUnavailable as error:
            msg = f"{sdist.name}: the build backend {system.backend!r} is not available from {label} ({str(error).splitlines()[0]})"
            raise WheelhouseError(msg) from None
        except pyproject_hooks.HookMissing as error:
            msg = f"{sdist.name}: the build backend {system.backend!r} has no {error.hook_name} hook"
            raise WheelhouseError(msg) from None
        final = dest / wheel.name
        normalize_wheel(wheel, final, epoch)
    return Built(final, epoch, where.built_in)


def normalize_wheel(source: Path, destination: Path, epoch: int) -> None:
    """Rewrite a wheel with sorted entries, one fixed time and canonical modes.

    Backends stamp entries with the build time or file times and order them as they
    walked the disk; RECORD hashes only contents, so it stays valid. The .dist-info
    directory goes last and RECORD last of all, as the wheel spec recommends.
    """
    stamp = time.gmtime(max(epoch, _ZIP_EPOCH))[:6]
    with zipfile.ZipFile(source) as original:
        infos = [i for i in original.infolist() if not i.is_dir()]

        def order(info: zipfile.ZipInfo) -> tuple[int, int, str]:
            in_dist_info = ".dist-info/" in info.filename
            return (int(in_dist_info), int(info.filename.endswith(".dist-info/RECORD")), info.filename)

        tmp = destination.with_name(f".{destination.name}.tmp")
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as rewritten:
                for info in sorted(infos, key=order):
                    entry = zipfile.ZipInfo(info.filename, date_time=stamp)
                    executable = (info.external_attr >> 16) & 0o111
                    entry.external_attr = (0o100755 if executable else 0o100644) << 16
                    entry.create_system = 3
                    entry.compress_type = zipfile.ZIP_DEFLATED
                    with original.open(info) as stream:
                        rewritten.writestr(entry, stream.read())
            tmp.replace(destination)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


# setuptools before 70.1 asks for wheel through get_requires_for_build_wheel, after the
# static requirements are installed: locked beside them, as a build frontend would add it.
_SETUPTOOLS_ASKS_FOR = ("wheel",)


def sdist_lock_input(pin: Pin, sdist: Path) -> str:
    """requirements/sdists/<name>-<version>.in: what the sdist's own [build-system] requires
    (PEP 517's legacy setuptools without one), for its own build lock."""
    system = build_system(sdist)
    lines = {str(r) for r in system.requires}
    if system.module.startswith("setuptools"):
        lines |= set(_SETUPTOOLS_ASKS_FOR)
    header = (
        f"# Generated by `invoke lock`; do not edit. What building {pin.requirement_line()} from\n"
        f"# its sdist {sdist.name} needs, as its [build-system] says ({system.backend}), locked in\n"
        f"# {Path(sdist_lock_file(pin.name, pin.version)).name} and installed from it for that build alone.\n"
    )
    return header + "".join(f"{line}\n" for line in sorted(lines, key=str.lower))
