"""Building a locked sdist into a reproducible wheel, with locked build requirements.

Each sdist-only dependency has a build lock of its own, requirements/sdists/<name>-<version>.txt
(written by `invoke lock` from the [build-system] requires in the sdist's pyproject.toml), so
an old sdist builds with the tools it names (grpcio 1.37's setup.py imports pkg_resources,
which a current setuptools no longer has), whatever the others or the first-party packages
need. A build installs exactly that lock's wheels, hash-checked and offline, into a fresh
environment and calls the sdist's PEP 517 backend there. No resolution against an index
happens during a build. SOURCE_DATE_EPOCH comes
from the sdist itself and the wheel's zip is rewritten in a canonical form, so two builds
of one sdist give byte-identical wheels.

Where the backend runs (where_to_build, run_backend; a first-party package whose wheel
holds compiled code is built the same way, see compiled.py): on this host when its
interpreter matches the target; otherwise in throwaway containers of the target's builder
image (`invoke base-image --builder`: the target's base image plus a compiler), with no
network and the work directory mounted at one fixed path, /build. On this host the compiler
is told to record the work directory as /build too, so that a compiled extension records the
same source paths in every build, wherever it ran. When neither is possible the build stops
with one line saying what is missing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shlex
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyproject_hooks
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from . import baseimage, index
from .console import Reporter
from .docker import Docker
from .errors import DockerError, LockError, TargetError, ToolError, WheelhouseError
from .index import Indexes
from .lockfile import Pin, parse_pins
from .model import LEGACY_BUILD_SYSTEM, BuildSystem
from .requirements import BUILD_LOCK, TOOLING_LOCK, sdist_lock_file
from .target import Target, check_host, host_glibc
from .tools import run

# Zip archives cannot store times before 1980.
_ZIP_EPOCH = 315532800
# The builder image for a target this host is not, and the docker client (named as for
# `invoke image`): read from the environment, as build-wheels passes no invoke config down.
BUILDER_IMAGE_ENV = "INVOKE_IMAGE_BUILDER"
DOCKER_ENV = "INVOKE_IMAGE_DOCKER"
# Paths inside a builder container. The work directory is always mounted at /build, so a
# compiled extension records the same source path in every build, on every machine.
_WORK = "/build"
_HOOK_SCRIPT = "/build-tools/_in_process.py"
_INSTALLER = "/build-tools/pip"
_HOOK_DIRECTORY = "/build-hook"
# Marks the throwaway containers, so that one a killed run left behind can be found.
SDIST_BUILD_LABEL = "io.wheelpipe.role=sdist-build"


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
class BuilderSettings:
    """The builder image for a target this host is not, and the docker client to run it.

    image None: the convention, baseimage.builder_tag() of the Debian suite whose python3
    and glibc are the target's (local/python-builder:3.13-slim-trixie for CPython 3.13 on
    manylinux_2_41_x86_64).
    """

    image: str | None = None
    docker: Docker = field(default_factory=Docker)

    @classmethod
    def from_environment(cls) -> BuilderSettings:
        return cls(os.environ.get(BUILDER_IMAGE_ENV) or None, Docker(command=os.environ.get(DOCKER_ENV) or "docker"))


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
    reporter: Reporter,
    builder: BuilderSettings | None = None,
) -> Built:
    """Build `sdist` into a canonical wheel in `dest` with its own locked build requirements,
    on this host when it matches the target, else in the target's builder image."""
    system = build_system(sdist)
    if build_lock is None:
        msg = f"{sdist_lock_file(pin.name, pin.version)}: missing, but {pin.requirement_line()} is built from its sdist with it; run `invoke lock`"
        raise LockError(msg)
    label, pins = build_lock.label, build_lock.pins
    where = where_to_build(pin.requirement_line(), "from its sdist", target, builder or BuilderSettings.from_environment(), reporter)
    require_locked(system.requires, pins, where.markers, lambda r: f"{pin.requirement_line()} needs to build {r}", label=label)
    epoch = source_date_epoch(sdist)
    with tempfile.TemporaryDirectory(prefix="wheelpipe-sdist-") as tmp:
        work = Path(tmp)
        with tarfile.open(sdist) as archive:
            top = _top(archive, sdist)
            archive.extractall(work / "src", filter="data")
        try:
            wheel = run_backend(
                where, work, work / "src" / top, system, BuildLock(pins, indexes, target, label), epoch, reporter, f"building a wheel from {sdist.name}",
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


def run_backend(
    where: OnHost | InContainer,
    work: Path,
    tree: Path,
    system: BuildSystem,
    build_lock: BuildLock,
    epoch: int,
    reporter: Reporter,
    what: str,
    check_requires: Callable[[Sequence[str]], object] | None = None,
) -> Path:
    """The wheel `system`'s backend builds from the source tree `tree` (inside `work`), run
    `where` in a fresh environment of the whole of `build_lock`; written to work/out.

    The one way a backend builds a wheel for the target, for sdists and first-party packages
    alike. pyproject_hooks' BackendUnavailable and HookMissing are the caller's to name.
    """
    _build_requirements(work, build_lock)
    python = where.install(work, reporter, build_lock.label)
    (work / "out").mkdir()
    runner = where.runner(work, {"SOURCE_DATE_EPOCH": str(epoch), "PYTHONHASHSEED": "0"}, reporter, what)
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


def host_environment(work: Path, build_lock: dict[str, Pin], indexes: Indexes, target: Target, reporter: Reporter) -> str:
    """The whole build lock installed, hash-checked and offline, into a fresh venv at work/env
    with this host's interpreter; its python. The first-party backends run there."""
    _build_requirements(work, BuildLock(build_lock, indexes, target))
    return OnHost().install(work, reporter, BUILD_LOCK)


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


# Installing the build lock: from the downloaded wheels alone, every one against its locked
# hash, nothing resolved or built, no pip configuration read.
_PIP_INSTALL = ["install", "--isolated", "--no-index", "--no-deps", "--require-hashes", "--only-binary", ":all:", "--disable-pip-version-check"]

# pyproject_hooks' runner: (cmd, cwd=None, extra_environ=None).
HookRunner = Callable[..., None]


@dataclass(frozen=True)
class OnHost:
    """This host's interpreter matches the target: the backend runs here."""

    markers: None = None  # this interpreter's own
    built_in: str = "this host"

    def install(self, work: Path, reporter: Reporter, label: str) -> str:
        """A fresh venv holding the build lock `label`, installed by the tooling's pip; its python."""
        run([sys.executable, "-m", "venv", "--without-pip", work / "env"], reporter=reporter, what="creating the build environment")
        python = work / "env" / "bin" / "python"
        run(
            [sys.executable, "-m", "pip", "--python", python, *_PIP_INSTALL, "--find-links", work / "build-wheels", "-r", work / "build-requirements.txt"],
            reporter=reporter,
            what=f"installing {label} into the build environment",
        )
        return str(python)

    def runner(self, work: Path, environment: dict[str, str], reporter: Reporter, what: str) -> HookRunner:
        environment = {**compiler_path_map(work), **environment}

        def run_hook(cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None) -> None:
            run(cmd, reporter=reporter, what=what, cwd=Path(cwd) if cwd else None, env={**(extra_environ or {}), **environment})

        return run_hook

    def path(self, work: Path, path: Path) -> str:
        return str(path)


def compiler_path_map(work: Path) -> dict[str, str]:
    """A preprocessor flag that records the work directory, a temporary one on this host, as
    the builder's fixed /build: debug information and __FILE__ then name the same paths in
    every build, from any clone, so a compiled extension is byte-identical too.

    CPPFLAGS, because setuptools, meson and autotools add it to their own compiler flags
    (setuptools takes CFLAGS instead of the interpreter's -O and -g); the user's own
    CPPFLAGS are kept, before it.
    """
    # The compiler records its working directory as getcwd() gives it, symlinks resolved.
    flags = " ".join(f"-ffile-prefix-map={path}={_WORK}" for path in dict.fromkeys([str(work), os.path.realpath(work)]))
    return {"CPPFLAGS": f"{os.environ.get('CPPFLAGS', '')} {flags}".strip()}


@dataclass(frozen=True)
class InContainer:
    """This host is not the target: the backend runs in throwaway containers of the target's
    builder image, one per step, with no network, as this user, the work directory mounted."""

    image: str
    image_id: str
    docker: Docker
    markers: dict[str, str]

    @property
    def built_in(self) -> str:
        return f"{self.image}@{self.image_id}"

    def install(self, work: Path, reporter: Reporter, label: str) -> str:
        """A fresh venv in the work directory holding the build lock `label`; its python, as the container sees it.

        The pip that installs it is the tooling's own (installed from requirements/dev.txt with
        its hashes), mounted read-only and run from outside the venv, so the venv holds the
        build lock and nothing else, every file of it from a wheel checked against its locked hash.
        """
        install = [f"{_WORK}/env/bin/python", _INSTALLER, *_PIP_INSTALL, "--no-cache-dir", "--root-user-action=ignore",
                   "--find-links", f"{_WORK}/build-wheels", "-r", f"{_WORK}/build-requirements.txt"]
        script = f"python3 -m venv --without-pip {_WORK}/env && exec {shlex.join(install)}"
        self._run(work, ["sh", "-c", script], reporter, f"installing {label} into a build environment in {self.image}",
                  mounts=[(_pip_directory(), _INSTALLER, "ro")])
        return f"{_WORK}/env/bin/python"

    def runner(self, work: Path, environment: dict[str, str], reporter: Reporter, what: str) -> HookRunner:
        def run_hook(cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None) -> None:
            python, script, hook, hook_directory = cmd
            # The backend path (a JSON list of absolute paths) names the sources by their host path.
            env = {key: value.replace(str(work), _WORK) for key, value in {**(extra_environ or {}), **environment}.items()}
            self._run(
                work, [python, _HOOK_SCRIPT, hook, _HOOK_DIRECTORY], reporter, f"{what} in {self.image}",
                cwd=self.path(work, Path(cwd)) if cwd else _WORK, env=env,
                mounts=[(script, _HOOK_SCRIPT, "ro"), (hook_directory, _HOOK_DIRECTORY, "rw")],
            )

        return run_hook

    def path(self, work: Path, path: Path) -> str:
        return f"{_WORK}/{path.relative_to(work).as_posix()}"

    def _run(self, work: Path, argv: list[str], reporter: Reporter, what: str, *, cwd: str = _WORK,
             env: dict[str, str] | None = None, mounts: Sequence[tuple[str | Path, str, str]] = ()) -> None:
        volumes = [(work, _WORK, "rw"), *mounts]
        self.docker.run(
            "run", "--rm", "--network", "none", "--label", SDIST_BUILD_LABEL,
            # As this user: what the build writes in the work directory stays this user's to read and remove.
            "--user", f"{os.getuid()}:{os.getgid()}", "--env", "HOME=/tmp",
            *(arg for key, value in (env or {}).items() for arg in ("--env", f"{key}={value}")),
            *(arg for source, inside, mode in volumes for arg in ("--volume", f"{source}:{inside}:{mode}")),
            "--workdir", cwd, self.image, *argv,
            reporter=reporter, what=what,
        )


def _pip_directory() -> Path:
    spec = importlib.util.find_spec("pip")
    if spec is None or not spec.submodule_search_locations:
        msg = f"pip is not installed in {sys.prefix}; install the tooling lock ({TOOLING_LOCK})"
        raise ToolError(msg)
    return Path(spec.submodule_search_locations[0])


def _host_description() -> str:
    glibc = host_glibc()
    libc = f"glibc {glibc[0]}.{glibc[1]}" if glibc else "no glibc"
    return f"{platform.python_implementation()} {sys.version_info.major}.{sys.version_info.minor} on {platform.machine()} ({libc})"


# (image id, target) pairs already checked in this process: one probe per builder, not per sdist.
_CHECKED_BUILDERS: set[tuple[str, Target]] = set()


def where_to_build(subject: str, how: str, target: Target, settings: BuilderSettings, reporter: Reporter) -> OnHost | InContainer:
    """This host when it matches the target; else the target's builder image, which must
    exist and match the target; else one line saying what is missing.

    `subject` names what is built (a pin, a first-party package), `how` what makes it need
    the target ("from its sdist"); both go into every line said about it.
    """
    what = f"{subject} {how}"
    try:
        check_host(target, f"build {what}")
    except TargetError:
        pass
    else:
        reporter.info(f"building {what} on this host ({_host_description()}, as the target)")
        return OnHost()
    need = f"{subject}: building it {how} needs {target.describe()}; this host is {_host_description()}"
    suite = baseimage.suite_for(target)
    image = settings.image or (baseimage.builder_tag(suite) if suite else None)
    glibc = f"glibc {target.glibc[0]}.{target.glibc[1]}"
    if image is None:
        msg = f"{need} and no Debian suite gives a builder image for it: set {BUILDER_IMAGE_ENV} to an image with CPython {target.python_version}, {glibc} and a compiler"
        raise TargetError(msg)
    try:
        settings.docker.require_engine(reporter)
    except DockerError as error:
        raise TargetError(f"{need} and the builder image {image} cannot be run: {error}") from None
    image_id = settings.docker.image_id(image, reporter)
    if image_id is None:
        if suite and target.machine == platform.machine():
            tag = "" if image == baseimage.builder_tag(suite) else f" --tag {image}"
            make = f"run `invoke base-image --suite {suite} --builder{tag}`"
        else:
            make = f"make one for {target.machine} with CPython {target.python_version}, {glibc} and a compiler"
        raise TargetError(f"{need} and the builder image {image} does not exist: {make}")
    if (image_id, target) not in _CHECKED_BUILDERS:
        try:
            baseimage.check_builds_for_target(settings.docker, image, target, reporter)
        except TargetError as error:
            raise TargetError(f"{subject}: {error}") from None
        _CHECKED_BUILDERS.add((image_id, target))
    reporter.info(f"building {what} in a throwaway container of the builder image {image} (this host is {_host_description()})")
    return InContainer(image, image_id, settings.docker, target.marker_environment())


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
