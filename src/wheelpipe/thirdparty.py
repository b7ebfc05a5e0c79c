"""The locked third-party distributions as wheels for the target.

What to fetch is decided from the index's file list, per pin: the best wheel for the
target whose published hash is locked; only when the index publishes no wheel for the
target at that version, the locked sdist, built into a wheel here (build/sdists.py) so that no
image ever compiles. A downloaded file whose bytes hash to no locked value stops the run;
it never turns into another kind of build.
"""

from __future__ import annotations

import email.parser
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from . import index
from .build import compiled, sdists
from .console import parallel, report
from .errors import LockError, WheelhouseError
from .index import Choice, Indexes, plan
from .lockfile import Pin
from .model import Repository
from .target import Target

# Index queries and downloads wait on the network, not on the two cores.
_PARALLEL = 8


@dataclass(frozen=True)
class Fetched:
    pin: Pin
    wheel: Path
    sdist: Path | None = None  # set when the wheel was built here from a locked sdist
    source_date_epoch: int | None = None  # of that build
    build_lock: sdists.SdistLock | None = None  # the sdist's own build lock it was built with


def merge_pins(pins: Iterable[Pin]) -> dict[tuple[str, str], Pin]:
    """One pin per (name, version) across locks, allowing only the hashes every lock allows.

    The wheel taken for a pin serves every lock that pins it, so it must match each of them:
    a hash changed in one lock cannot be outvoted by another lock pinning the same version.
    """
    merged: dict[tuple[str, str], Pin] = {}
    for pin in pins:
        key = (pin.name, pin.version)
        if key not in merged:
            merged[key] = pin
            continue
        common = merged[key].hashes & pin.hashes
        if not common:
            msg = f"{pin.requirement_line()}: {merged[key].source} and {pin.source} lock no hash in common; run `invoke lock`"
            raise LockError(msg)
        merged[key] = replace(merged[key], hashes=common, source=f"{merged[key].source}, {pin.source}")
    return merged


def fetch(
    pins: list[Pin],
    dest: Path,
    indexes: Indexes,
    target: Target,
    build_lock_of: Callable[[Pin], sdists.SdistLock | None],
) -> list[Fetched]:
    """Download the pinned wheels for the target into dest, building sdist-only ones, each
    with its own build lock (`build_lock_of` the pin)."""
    if not pins:
        return []
    dest.mkdir(parents=True, exist_ok=True)
    report.info(f"downloading {len(pins)} wheel(s) for {target.describe()}: " + ", ".join(p.requirement_line() for p in pins))
    choices = plan(pins, indexes, target)

    def download(choice: Choice) -> Path:
        folder = dest / "sdists" if choice.builds_from_sdist else dest
        return index.download(choice.file, choice.pin.hashes, folder, f"{choice.pin.source or 'lock'}: {choice.pin.requirement_line()}")

    files = parallel(download, choices, _PARALLEL)
    fetched = []
    for choice, path in zip(choices, files, strict=True):
        if not choice.builds_from_sdist:
            fetched.append(Fetched(choice.pin, path))
            continue
        report.info(f"{choice.pin.requirement_line()} has no wheel for the target: building it from its locked sdist {path.name}")
        build_lock = build_lock_of(choice.pin)
        built = sdists.build(path, choice.pin, dest, target, build_lock, indexes)
        wheel = compiled.checked_for_target(built.wheel, target, choice.pin.requirement_line(), built.source_date_epoch)
        fetched.append(Fetched(choice.pin, wheel, sdist=path, source_date_epoch=built.source_date_epoch, build_lock=build_lock))
    accepted = target.accepts()
    for item in fetched:
        tags = parse_wheel_filename(item.wheel.name)[3]
        if not tags & accepted:
            msg = f"{item.wheel.name}: its tags {', '.join(sorted(map(str, tags)))} do not run on the target {target.describe()}"
            raise WheelhouseError(msg)
    return fetched


# -- the lock as a closure ----------------------------------------------------------------


def requires_dist(wheel: Path) -> list[Requirement]:
    """The Requires-Dist of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(names) != 1:
            msg = f"{wheel.name}: expected one .dist-info/METADATA, found {len(names)}"
            raise WheelhouseError(msg)
        metadata = email.parser.BytesParser().parsebytes(archive.read(names[0]), headersonly=True)
    found = []
    for line in metadata.get_all("Requires-Dist") or []:
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            msg = f"{wheel.name}: malformed Requires-Dist {line!r} in its METADATA"
            raise WheelhouseError(msg) from None
    return found


def check_closure(repo: Repository, target: Target, service: str, pins: dict[str, Pin], wheels: dict[str, Path], built: dict[str, Path]) -> None:
    """Every requirement that applies on the target, from the Requires-Dist of the service's
    built first-party wheels down through each pinned wheel's metadata (with the extras asked
    for), is met: a first-party one by the version built, any other by a version pinned.

    This is what `pip check` proves of an installed environment, proven of the install
    manifest before it is written, from the very wheels it pins, so the image build need not
    run it. `wheels` maps each pinned third-party name to its wheel, `built` each first-party
    name of the service's closure to the wheel just built or reused. A lock edited by hand (a
    pin block deleted, a version changed) fails here, naming the package and who requires it.
    """
    label = repo.relative(repo.lock_path(service))
    environment = target.marker_environment()
    versions = {name: parse_wheel_filename(wheel.name)[1] for name, wheel in built.items()}
    pending: list[tuple[str, Requirement]] = [
        (f"{name}=={versions[name]}", requirement) for name, wheel in sorted(built.items()) for requirement in requires_dist(wheel)
    ]
    seen: set[tuple[str, str]] = set()
    while pending:
        who, requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker and not _applies(requirement.marker, environment, _who_extra(who)):
            continue
        if name in versions:
            if requirement.specifier and not requirement.specifier.contains(versions[name], prereleases=True):
                msg = f"{service}: {who} requires {requirement}, but the first-party {name} is {versions[name]}; change one of the two"
                raise LockError(msg)
            continue  # its own requirements are followed from its wheel, above
        pin = pins.get(name)
        if pin is None:
            msg = f"{label}: {name} is not pinned, but {who} requires {requirement} on {target.describe()}; run `invoke lock`"
            raise LockError(msg)
        if requirement.specifier and not requirement.specifier.contains(pin.version, prereleases=True):
            msg = f"{label}: pins {name}=={pin.version}, but {who} requires {requirement}; run `invoke lock`"
            raise LockError(msg)
        if name not in wheels:
            msg = f"{label}: {name}=={pin.version} is pinned but no wheel of it is in the wheelhouse"
            raise WheelhouseError(msg)
        for extra in sorted(requirement.extras) or [""]:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            requirer = f"{name}=={pin.version}" + (f"[{extra}]" if extra else "")
            pending.extend((requirer, dependency) for dependency in requires_dist(wheels[name]))


def _who_extra(who: str) -> str:
    """The extra a requirer was asked for (`name==1.0[extra]`), for `extra == ...` markers."""
    return who.rsplit("[", 1)[1].rstrip("]") if who.endswith("]") else ""


def _applies(marker: Marker, environment: dict[str, str], extra: str) -> bool:
    return marker.evaluate({**environment, "extra": extra})
