"""The offline install check: each service's install manifest installs, and the service runs.

`verify-wheelhouse` proves the wheelhouse holds exactly what the locks pin, and build-wheels
proved every pin's requirements met; neither proves the code imports with those pins (a
dependency that removed a name its dependant imports, werkzeug 3 under Flask 2.2's
`url_quote`) or imports nothing undeclared. So each service's install manifest is installed
as another machine would (offline, from the wheelhouse alone, every wheel against its hash,
wheels only), by the installer the images use (uv, taken from the wheelhouse), into a
throwaway environment of the target's interpreter; then that interpreter imports every
top-level module of the service's first-party distributions and loads its console scripts'
entry points (importcheck.py, which the image build runs too).

The target's interpreter is this host's when it matches the target; otherwise the target's
base image's, in a throwaway container with no network (another architecture's under qemu).
With several targets, each is checked with its own install manifests and installer.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import baseimage, emulation, importcheck, launch
from .console import report
from .docker import Docker
from .errors import PipelineError, TargetError, ToolError
from .model import Repository, WorkerService
from .target import Target, check_host
from .tools import run
from .wheelhouse import STORE, WHEELHOUSE, Wheelhouse, install_path

# Starts the line importcheck.py prints when an import fails.
MARKER = "install check: "
# Where the work directory and the wheelhouse are seen inside a container.
_WORK, _WHEELS = "/check", "/wheelhouse"


class InstallCheckError(PipelineError):
    """A service's install manifest does not install offline, or what it installs does not import."""


@dataclass(frozen=True)
class OnHost:
    """This host's interpreter is the target's: the environments are made here."""

    python: str = sys.executable

    def describe(self) -> str:
        return f"this host's interpreter ({sys.executable})"

    def locate(self, work: Path, wheelhouse: Path) -> tuple[str, str]:
        """Where the steps see the work directory and the wheelhouse."""
        return str(work), str(wheelhouse)

    def run(self, steps: list[list[str]], work: Path, wheelhouse: Path, what: str) -> str:
        return "".join(run(argv, what=what, cwd=work).stdout for argv in steps)


@dataclass(frozen=True)
class InContainer:
    """This host is not the target: the environments are made in a throwaway container of the
    target's base image, with no network, as this user, the wheelhouse mounted read-only."""

    image: str
    docker: Docker
    python: str = "python3"  # the base image's, from its PATH

    def describe(self) -> str:
        return f"a throwaway container of {self.image} (no network)"

    def locate(self, work: Path, wheelhouse: Path) -> tuple[str, str]:
        return _WORK, _WHEELS

    def run(self, steps: list[list[str]], work: Path, wheelhouse: Path, what: str) -> str:
        script = " && ".join(shlex.join(argv) for argv in steps)
        return self.docker.run(
            "run", "--rm", "--network", "none", "--user", f"{os.getuid()}:{os.getgid()}", "--env", "HOME=/tmp",
            "--volume", f"{work}:{_WORK}:rw", "--volume", f"{wheelhouse}:{_WHEELS}:ro", "--workdir", _WORK,
            "--entrypoint", "sh", self.image, "-c", script,
            what=what,
        ).stdout


Place = OnHost | InContainer


def place_for(repo: Repository, target: Target, base_image: str, docker: Docker) -> Place:
    """This host when it matches the target; else the first of the target's base image (from
    `base_image`, as baseimage.base_for names it) and its bootstrapped base image that is
    present and matches the target; else one line saying what is missing and how to make it."""
    base_image = baseimage.base_for(base_image, target, repo.targets)
    try:
        check_host(target, "check the install manifests")
    except TargetError as error:
        mismatch = str(error)
    else:
        return OnHost()
    suite = baseimage.suite_for(target)
    candidates = list(dict.fromkeys([base_image, *([baseimage.base_tag(suite, target.machine)] if suite else [])]))
    tried = []
    docker.require_engine()
    emulation.require_runs(target.machine, f"the install check for {target.describe()}")
    for image in candidates:
        if not docker.image_id(image):
            tried.append(f"{image} is not present")
            continue
        try:
            baseimage.check_matches_target(docker, image, target, cache=repo.root / STORE / "base-images.json")
        except TargetError as error:
            tried.append(str(error))
            continue
        return InContainer(image, docker)
    arch = f" --arch {target.debian_arch}" if emulation.is_foreign(target.machine) else ""
    make = f"run `invoke base-image --suite {suite}{arch}`" if suite else f"set INVOKE_IMAGE_BASE to an image with CPython {target.python_version} on {target.platform}"
    msg = f"the install check needs {target.describe()}: {mismatch}, and no base image of the target can stand in ({'; '.join(tried)}): {make}"
    raise InstallCheckError(msg)


def places_for(repo: Repository, base_image: str, docker: Docker) -> list[tuple[Target, Place]]:
    """Where each target's install check runs (place_for), known before anything is read or built."""
    return [(target, place_for(repo, target, base_image, docker)) for target in repo.targets]


def check_every_target(repo: Repository, house: Wheelhouse, places: list[tuple[Target, Place]]) -> list[str]:
    """check_installs of every service on each target, in its place; the lines it printed."""
    return [line for target, place in places for line in check_installs(repo, house, list(repo.services), place, target)]


def _commands(repo: Repository, service: str) -> list[str]:
    """The import check's arguments for what the service's image would run: its command and a
    worker's health command (their console scripts' entry points, or python -m's module) and
    what the command serves; without [tool.wheelpipe.service], every console script the
    service declares is loaded instead (by --entry-points-of)."""
    settings = repo.service(service).service
    if settings is None:
        return []
    commands = [settings.command, *([settings.health_command] if isinstance(settings, WorkerService) and settings.health_command else [])]
    return [
        *(arg for command in commands for arg in ("--command", shlex.join(command))),
        *(arg for reference in launch.app_references(settings) for arg in ("--reference", reference)),
    ]


def _steps(repo: Repository, house: Wheelhouse, service: str, target: Target, python: str, work: str, wheels: str) -> list[list[str]]:  # noqa: PLR0913 - where each path is seen differs by place
    """A fresh venv of the target's interpreter, the install manifest installed into it offline,
    then the import check run by its interpreter (-I -B: nothing from the environment or the
    working directory, no bytecode written)."""
    manifest = house.install_manifest(service, target).relative_to(house.path).as_posix()
    first_party = [package.name for package in repo.closure(service)]
    return [
        [python, "-m", "venv", "--without-pip", f"{work}/{service}"],
        [f"{work}/uv", "pip", "install", "--no-config", "--python", f"{work}/{service}/bin/python", "--offline", "--no-index",
         "--no-cache", "--require-hashes", "--only-binary", ":all:", "--link-mode", "copy",
         "--find-links", wheels, "--requirement", f"{wheels}/{manifest}"],
        [f"{work}/{service}/bin/python", "-I", "-B", f"{work}/importcheck.py", "--marker", MARKER,
         *(arg for name in first_party for arg in ("--distribution", name)),
         "--entry-points-of", repo.service(service).name,
         *_commands(repo, service)],
    ]


def check_installs(repo: Repository, house: Wheelhouse, services: list[str], place: Place, target: Target) -> list[str]:
    """Install each service's manifest for the target offline into a throwaway environment and
    import it there; one line per service saying what was checked. The first failure stops the
    check, named with its service."""
    on = f" for {target.platform}" if len(repo.targets) > 1 else ""
    report.step(f"installing {', '.join(services)}{on} offline from the wheelhouse and importing them, in {place.describe()}")
    checked = []
    with tempfile.TemporaryDirectory(prefix="wheelpipe-install-check-") as tmp:
        work = Path(tmp)
        house.unpack_installer(work, target)
        shutil.copyfile(importcheck.__file__, work / "importcheck.py")
        for service in services:
            manifest = f"{WHEELHOUSE}/{install_path(repo.targets, target, service)}"
            try:
                output = place.run(_steps(repo, house, service, target, place.python, *place.locate(work, house.path)), work, house.path, f"the install check of {service}")
            except ToolError as error:
                raise InstallCheckError(f"{service}: {_why(error, manifest)}") from None
            summary = output.strip().splitlines()[-1] if output.strip() else "installed"
            checked.append(f"{service}: {manifest} installs offline; {summary}")
    return checked


def _why(error: ToolError, manifest: str) -> str:
    """The import check's own line; else what stopped the install (the installer's error)."""
    for line in error.output.splitlines():
        if line.startswith(MARKER):
            return line.removeprefix(MARKER)
    detail = str(error).partition("): ")[2] or str(error)
    return f"{manifest} does not install offline from the wheelhouse: {detail}"
