"""Fetching the locked third-party distributions as wheels for the target.

Wheels come from the index with their locked hashes checked by pip. A distribution
published only as an sdist is fetched (hash-checked too) and built into a wheel here,
by an interpreter that matches the target, so no image ever compiles at install time.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from .console import Reporter, run
from .errors import ToolError, WheelhouseError
from .fsutil import sha256_file
from .lockfile import Pin
from .target import Target, check_host


@dataclass(frozen=True)
class Fetched:
    pin: Pin
    wheel: Path
    sdist: Path | None = None  # set when the wheel was built here from a locked sdist


def target_tags(target: Target) -> set[Tag]:
    """Every wheel tag an interpreter of the target accepts."""
    major, minor = (int(x) for x in target.python_version.split("."))
    # linux_<arch>: a wheel built here from an sdist, by an interpreter that matches the target.
    platforms = [*target.manylinux_platforms(), f"linux_{target.machine}"]
    tags = set(cpython_tags((major, minor), abis=[target.abi], platforms=platforms))
    tags |= set(compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=platforms))
    return tags


def _requirements_text(pins: list[Pin]) -> str:
    return "".join(f"{p.name}=={p.version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(p.hashes)) + "\n" for p in pins)


def _pip_download(pins: list[Pin], dest: Path, extra: list[str], pip_args: tuple[str, ...], reporter: Reporter, what: str) -> None:
    requirements = dest / "requirements.txt"
    requirements.write_text(_requirements_text(pins))
    try:
        run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--progress-bar=off",
             "--dest", dest, *extra, *pip_args, "-r", requirements],
            reporter=reporter,
            what=what,
        )
    finally:
        requirements.unlink()


def _match(pins: list[Pin], directory: Path, target: Target) -> dict[str, Path]:
    accepted = target_tags(target)
    found: dict[str, Path] = {}
    by_name = {p.name: p for p in pins}
    for wheel in directory.glob("*.whl"):
        name, version, _, tags = parse_wheel_filename(wheel.name)
        pin = by_name.get(canonicalize_name(name))
        if pin is None or str(version) != pin.version:
            msg = f"{wheel.name}: not one of the requested pins"
            raise WheelhouseError(msg)
        if not tags & accepted:
            msg = f"{wheel.name}: its tags {', '.join(sorted(map(str, tags)))} do not run on the target {target.describe()}"
            raise WheelhouseError(msg)
        found[pin.name] = wheel
    return found


def fetch(pins: list[Pin], dest: Path, target: Target, pip_args: tuple[str, ...], reporter: Reporter) -> list[Fetched]:
    """Download the pinned wheels for the target into dest, building sdist-only ones."""
    if not pins:
        return []
    dest.mkdir(parents=True, exist_ok=True)
    reporter.info(f"downloading {len(pins)} wheel(s) for {target.describe()}: " + ", ".join(p.requirement_line() for p in pins))
    binary = target.pip_download_args()
    pending: list[Pin] = []
    try:
        _pip_download(pins, dest, binary, pip_args, reporter, "downloading the locked wheels")
    except ToolError:
        # One pin without a wheel for the target fails the whole batch: find which.
        have = _match(pins, dest, target)
        for pin in pins:
            if pin.name in have:
                continue
            try:
                _pip_download([pin], dest, binary, pip_args, reporter, f"downloading {pin.requirement_line()}")
            except ToolError:
                pending.append(pin)
    wheels = _match(pins, dest, target)
    fetched = [Fetched(pin, wheels[pin.name]) for pin in pins if pin.name in wheels]
    for pin in pending:
        fetched.append(_build_from_sdist(pin, dest, target, pip_args, reporter))
    for item in fetched:
        digest = sha256_file(item.sdist or item.wheel)
        if digest not in item.pin.hashes:
            msg = f"{(item.sdist or item.wheel).name}: sha256 {digest} is not one of the hashes locked for {item.pin.requirement_line()}"
            raise WheelhouseError(msg)
    return fetched


def _build_from_sdist(pin: Pin, dest: Path, target: Target, pip_args: tuple[str, ...], reporter: Reporter) -> Fetched:
    check_host(target, f"build {pin.requirement_line()} from its sdist")
    reporter.info(f"{pin.requirement_line()} has no wheel for the target: building it from its locked sdist")
    with tempfile.TemporaryDirectory(prefix="wheelpipe-sdist-") as tmp:
        sdists = Path(tmp, "sdist")
        sdists.mkdir()
        try:
            _pip_download([pin], sdists, ["--no-binary=:all:"], pip_args, reporter, f"downloading the sdist of {pin.requirement_line()}")
        except ToolError as error:
            msg = f"{pin.requirement_line()}: neither a wheel for {target.describe()} nor an sdist matching the locked hashes: {error}"
            raise WheelhouseError(msg) from None
        (sdist,) = list(sdists.iterdir())
        kept = dest / "sdists" / sdist.name
        kept.parent.mkdir(exist_ok=True)
        sdist.rename(kept)
        built = Path(tmp, "wheel")
        run([sys.executable, "-m", "build", "--wheel", "--outdir", built, kept], reporter=reporter, what=f"building a wheel from {kept.name}")
        (wheel,) = list(built.glob("*.whl"))
        final = dest / wheel.name
        wheel.rename(final)
    if not parse_wheel_filename(final.name)[3] & target_tags(target):
        msg = f"{final.name}: built from {kept.name}, but its tags do not run on {target.describe()}"
        raise WheelhouseError(msg)
    return Fetched(pin, final, sdist=kept)
