"""Where and how a build backend runs: on this host, or in a throwaway container of the target's builder image.

On this host when its interpreter matches the target; otherwise in throwaway containers of
the target's builder image (`invoke base-image --builder`: the target's base image plus a
compiler), with no network and the work directory mounted at one fixed path, /build. On this
host the compiler is told to record the work directory as /build too, so that a compiled
extension records the same source paths in every build, wherever it ran. When neither is
possible the build stops with one line saying what is missing.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import baseimage, emulation
from ..console import report
from ..docker import Docker
from ..errors import DockerError, TargetError, ToolError
from ..requirements import TOOLING_LOCK
from ..target import Target, check_host, host_glibc
from ..tools import run

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

    def install(self, work: Path, label: str) -> str:
        """A fresh venv holding the build lock `label`, installed by the tooling's pip; its python."""
        run([sys.executable, "-m", "venv", "--without-pip", work / "env"], what="creating the build environment")
        python = work / "env" / "bin" / "python"
        run(
            [sys.executable, "-m", "pip", "--python", python, *_PIP_INSTALL, "--find-links", work / "build-wheels", "-r", work / "build-requirements.txt"],
            what=f"installing {label} into the build environment",
        )
        return str(python)

    def runner(self, work: Path, environment: dict[str, str], what: str) -> HookRunner:
        environment = {**compiler_path_map(work), **environment}

        def run_hook(cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None) -> None:
            run(cmd, what=what, cwd=Path(cwd) if cwd else None, env={**(extra_environ or {}), **environment})

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
    platform: str  # Docker's name of the target's architecture: linux/arm64 runs under qemu on x86_64

    @property
    def built_in(self) -> str:
        return f"{self.image}@{self.image_id}"

    def install(self, work: Path, label: str) -> str:
        """A fresh venv in the work directory holding the build lock `label`; its python, as the container sees it.

        The pip that installs it is the tooling's own (installed from requirements/dev.txt with
        its hashes), mounted read-only and run from outside the venv, so the venv holds the
        build lock and nothing else, every file of it from a wheel checked against its locked hash.
        """
        install = [f"{_WORK}/env/bin/python", _INSTALLER, *_PIP_INSTALL, "--no-cache-dir", "--root-user-action=ignore",
                   "--find-links", f"{_WORK}/build-wheels", "-r", f"{_WORK}/build-requirements.txt"]
        script = f"python3 -m venv --without-pip {_WORK}/env && exec {shlex.join(install)}"
        self._run(work, ["sh", "-c", script], f"installing {label} into a build environment in {self.image}",
                  mounts=[(_pip_directory(), _INSTALLER, "ro")])
        return f"{_WORK}/env/bin/python"

    def runner(self, work: Path, environment: dict[str, str], what: str) -> HookRunner:
        def run_hook(cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None) -> None:
            python, script, hook, hook_directory = cmd
            # The backend path (a JSON list of absolute paths) names the sources by their host path.
            env = {key: value.replace(str(work), _WORK) for key, value in {**(extra_environ or {}), **environment}.items()}
            self._run(
                work, [python, _HOOK_SCRIPT, hook, _HOOK_DIRECTORY], f"{what} in {self.image}",
                cwd=self.path(work, Path(cwd)) if cwd else _WORK, env=env,
                mounts=[(script, _HOOK_SCRIPT, "ro"), (hook_directory, _HOOK_DIRECTORY, "rw")],
            )

        return run_hook

    def path(self, work: Path, path: Path) -> str:
        return f"{_WORK}/{path.relative_to(work).as_posix()}"

    def _run(self, work: Path, argv: list[str], what: str, *, cwd: str = _WORK,
             env: dict[str, str] | None = None, mounts: Sequence[tuple[str | Path, str, str]] = ()) -> None:
        volumes = [(work, _WORK, "rw"), *mounts]
        self.docker.run(
            "run", "--rm", "--network", "none", "--label", SDIST_BUILD_LABEL, "--platform", self.platform,
            # As this user: what the build writes in the work directory stays this user's to read and remove.
            "--user", f"{os.getuid()}:{os.getgid()}", "--env", "HOME=/tmp",
            *(arg for key, value in (env or {}).items() for arg in ("--env", f"{key}={value}")),
            *(arg for source, inside, mode in volumes for arg in ("--volume", f"{source}:{inside}:{mode}")),
            "--workdir", cwd, self.image, *argv,
            what=what,
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


def where_to_build(subject: str, how: str, target: Target, settings: BuilderSettings) -> OnHost | InContainer:
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
        report.info(f"building {what} on this host ({_host_description()}, as the target)")
        return OnHost()
    need = f"{subject}: building it {how} needs {target.describe()}; this host is {_host_description()}"
    suite = baseimage.suite_for(target)
    image = settings.image or (baseimage.builder_tag(suite, target.machine) if suite else None)
    glibc = f"glibc {target.glibc[0]}.{target.glibc[1]}"
    if image is None:
        msg = f"{need} and no Debian suite gives a builder image for it: set {BUILDER_IMAGE_ENV} to an image with CPython {target.python_version}, {glibc} and a compiler"
        raise TargetError(msg)
    try:
        settings.docker.require_engine()
    except DockerError as error:
        raise TargetError(f"{need} and the builder image {image} cannot be run: {error}") from None
    emulation.require_runs(target.machine, f"{subject}: building it {how} in the builder image {image}")
    image_id = settings.docker.image_id(image)
    if image_id is None:
        if suite:
            tag = "" if image == baseimage.builder_tag(suite, target.machine) else f" --tag {image}"
            arch = f" --arch {target.debian_arch}" if emulation.is_foreign(target.machine) else ""
            make = f"run `invoke base-image --suite {suite} --builder{arch}{tag}`"
        else:
            make = f"make one for {target.machine} with CPython {target.python_version}, {glibc} and a compiler"
        raise TargetError(f"{need} and the builder image {image} does not exist: {make}")
    if (image_id, target) not in _CHECKED_BUILDERS:
        try:
            baseimage.check_builds_for_target(settings.docker, image, target)
        except TargetError as error:
            raise TargetError(f"{subject}: {error}") from None
        _CHECKED_BUILDERS.add((image_id, target))
    report.info(f"building {what} in a throwaway container of the builder image {image} (this host is {_host_description()})")
    return InContainer(image, image_id, settings.docker, target.marker_environment(), target.docker_platform)
