"""The one model of the monorepo that every step reads.

Packages are discovered from the pyproject.toml files under shared/ and services/;
nothing lists them anywhere else. A service's name is its directory's name unless its
[tool.wheelpipe.service] names it, or the directory's name is no Docker name (then its
distribution's name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .deploy import ChartRegistry, Environment, Resources
from .errors import LockError, RepositoryError, TargetError, UnknownServiceError
from .includes import Include
from .index import Indexes
from .lockfile import Pin, check_markers, parse_pins
from .requirements import INSTALLER, TOOLING_LOCK, lock_path
from .target import Target

SHARED_DIR = "shared"
SERVICES_DIR = "services"
DOCKERFILES_DIR = "dockerfiles"


class StaleBuildLockError(LockError):
    """requirements/build.txt is missing, or does not pin what a package's backend needs to
    say what the package is: only `invoke lock` can fix it, so it alone gets past it."""


# An http service's defaults, when its table does not say (documented in the README).
DEFAULT_PORT_ENV = "PORT"  # what gunicorn reads, and most platforms set
DEFAULT_HEALTH_PATH = "/healthz"
# In a command's words, where the service's port goes: replaced in the image by the value of
# its port variable when the command runs (so an override of the variable moves both).
PORT_PLACEHOLDER = "{port}"
# The interpreter of the service's venv, as a command's first word: `python -m module`.
PYTHON_WORDS = ("python", "python3")


@dataclass(frozen=True)
class HttpService:
    """[tool.wheelpipe.service] kind = "http": serves HTTP on `port`, which reaches the app in
    the environment variable `port_env`; its image's health check is a GET of `health_path` on
    that port from a probe of the standard library (the app is never started a second time)."""

    command: tuple[str, ...]  # exec form: a console script of the venv, or python -m module
    port: int
    port_env: str = DEFAULT_PORT_ENV
    health_path: str = DEFAULT_HEALTH_PATH
    kind: Literal["http"] = "http"
    resources: Resources = Resources()  # what a pod requests and is limited to; unset: deploy's defaults


@dataclass(frozen=True)
class WorkerService:
    """[tool.wheelpipe.service] kind = "worker": a long-running process on no port. Its image's
    health is the process itself (Docker sees it exit) unless it declares a health command."""

    command: tuple[str, ...]  # exec form: a console script of the venv, or python -m module
    health_command: tuple[str, ...] = ()  # exec form, its first word a console script; () for none
    kind: Literal["worker"] = "worker"
    resources: Resources = Resources()  # what a pod requests and is limited to; unset: deploy's defaults


# How a service's image runs it: [tool.wheelpipe.service] in its pyproject.toml.
ServiceSettings = HttpService | WorkerService
SERVICE_KINDS = ("http", "worker")


@dataclass(frozen=True)
class BuildSystem:
    """A package's [build-system]: the PEP 517 backend and what must be installed to run it."""

    backend: str  # e.g. "hatchling.build", "setuptools.build_meta:__legacy__"
    requires: tuple[Requirement, ...]
    backend_path: tuple[str, ...] = ()  # in-tree backends, relative to the package

    @property
    def module(self) -> str:
        return self.backend.split(":", 1)[0].strip()


# PEP 517 and 518: without [build-system] a package is built as setup.py always built it, by
# setuptools' legacy backend; a table without build-backend means that backend too.
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
LEGACY_BUILD_SYSTEM = BuildSystem(LEGACY_BACKEND, (Requirement("setuptools>=40.8.0"),))


@dataclass(frozen=True)
class PackageLocation:
    """Where a package is, before its metadata is read: enough to list and stage its files."""

    directory: str  # repository-relative, e.g. "services/order"
    path: Path
    # What its backend's configuration takes from outside the directory (Polylith's bricks).
    includes: tuple[Include, ...] = ()


@dataclass(frozen=True)
class Package:
    kind: str  # "shared" or "service"
    directory: str  # repository-relative, e.g. "services/order"
    path: Path
    name: str  # canonical distribution name, e.g. "order-manager"
    version: str
    requirements: tuple[Requirement, ...]
    internal: tuple[str, ...] = ()  # canonical names of first-party direct dependencies
    service: ServiceSettings | None = None
    build_system: BuildSystem = LEGACY_BUILD_SYSTEM
    # "pyproject.toml" when name, version and dependencies are static in [project]; else
    # "backend": read from its build backend's prepare_metadata_for_build_wheel.
    metadata_from: str = "pyproject.toml"
    # A service's name (its image's, its lock's): [tool.wheelpipe.service] name, else its
    # directory's name, else (a directory name Docker refuses) its distribution name. "" for
    # a shared package.
    service_name: str = ""
    # What its backend's configuration takes from outside the directory (Polylith's bricks):
    # staged with it, part of its fingerprint, and of what `invoke affected` watches.
    includes: tuple[Include, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.directory} ({self.name})"

    @property
    def third_party(self) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requirements if canonicalize_name(r.name) not in self.internal)


@dataclass
class Repository:
    root: Path
    # [tool.wheelpipe.target]: one interpreter on each declared platform, in the declared
    # order. Every lock is resolved and checked for each of them.
    targets: tuple[Target, ...]
    release_version: str
    # [tool.wheelpipe.release] chart-registry: where `invoke release` pushes the chart (None: nowhere).
    chart_registry: ChartRegistry | None = None
    indexes: Indexes = field(default_factory=Indexes)  # where locks resolve and wheels come from
    resolver: str = "uv"  # [tool.wheelpipe.lock] resolver: "uv" or "pip-tools"
    # [tool.wheelpipe.lock] one-version: every service lock must pin the same version of a
    # package (off: each service's lock stands alone, as services are deployed apart).
    one_version: bool = False
    workspace: Workspace = field(default_factory=lambda: Workspace())
    # Every package's [build-system], by directory: known from pyproject.toml alone, so that
    # `invoke lock` can lock the backends before it reads what only they can tell.
    build_systems: dict[str, BuildSystem] = field(default_factory=dict)
    _packages: dict[str, Package] = field(default_factory=dict, repr=False)
    # Why the metadata of packages described by their backend could not be read (the build
    # lock is missing or stale): every use of the packages is then that one line.
    _unread: str | None = field(default=None, repr=False)
    # The directories of the packages whose metadata comes from their build backend.
    backend_described: list[str] = field(default_factory=list)
    # What a team should know of how the model read its repository, one line each (a service
    # named other than its directory): the task layer shows them.
    notes: list[str] = field(default_factory=list)
    # [tool.wheelpipe.deploy.<env>] of the root pyproject.toml, by name: where manifests go.
    environments: dict[str, Environment] = field(default_factory=dict)

    @property
    def target(self) -> Target:
        """The first declared platform's target: what the wheelhouse, the images and the
        release are built for (the others are locked, not yet built)."""
        return self.targets[0]

    def target_for(self, machine: str, where: str) -> Target:
        """The declared target on `machine` (x86_64, aarch64); one line when none is declared."""
        for target in self.targets:
            if target.machine == machine:
                return target
        declared = ", ".join(t.platform for t in self.targets)
        first = self.targets[0]
        wanted = f"manylinux_{first.glibc[0]}_{first.glibc[1]}_{machine}"
        msg = f"{where}: pyproject.toml [tool.wheelpipe.target] declares no {machine} platform ({declared}); list {wanted} in its platforms"
        raise TargetError(msg)

    @property
    def packages(self) -> dict[str, Package]:
        """Every package, by canonical distribution name."""
        if self._unread is not None:
            raise StaleBuildLockError(self._unread)
        return self._packages

    @cached_property
    def services(self) -> dict[str, Package]:
        """Services by their name (Package.service_name)."""
        found = (p for p in self.packages.values() if p.kind == "service")
        return {p.service_name: p for p in sorted(found, key=lambda p: p.service_name)}

    def service(self, name: str) -> Package:
        try:
            return self.services[name]
        except KeyError:
            raise UnknownServiceError(name, list(self.services)) from None

    def select_services(self, name: str | None) -> list[str]:
        """`--service NAME` or, without it (None), every service; an empty name is unknown."""
        return list(self.services) if name is None else [self.service(name).service_name]

    def closure(self, service: str) -> list[Package]:
        """The service and every internal package it uses, dependencies first."""
        ordered: list[Package] = []

        def visit(package: Package) -> None:
            if package in ordered:
                return
            for dependency in package.internal:
                visit(self.packages[dependency])
            ordered.append(package)

        visit(self.service(service))
        return ordered

    def third_party_requirements(self, service: str) -> list[str]:
        """Direct third-party requirements of the service's whole internal closure."""
        found = {str(r) for package in self.closure(service) for r in package.third_party}
        return sorted(found, key=str.lower)

    def services_using(self, package_name: str) -> list[str]:
        return [s for s in self.services if any(p.name == package_name for p in self.closure(s))]

    def lock_path(self, service: str) -> Path:
        return lock_path(self.root, service)

    def lock_input(self, service: str) -> str:
        """requirements/<service>.in as `invoke lock` generates it."""
        sources = ", ".join(f"{p.directory}/pyproject.toml" for p in self.closure(service))
        header = (
            f"# Generated by `invoke lock` from {sources}; do not edit.\n"
            "# The third-party requirements of the service and of the internal packages it uses.\n"
        )
        return header + "".join(f"{line}\n" for line in self.third_party_requirements(service))

    def load_lock(self, service: str) -> dict[str, Pin]:
        """A service's lock, refused when its generated input no longer matches the pyproject files."""
        lock = self.lock_path(service)
        label = self.relative(lock)
        if not lock.is_file():
            msg = f"{label}: missing; run `invoke lock` to create the lock for service {service!r}"
            raise LockError(msg)
        source = lock.with_suffix(".in")
        if not source.is_file() or source.read_text() != self.lock_input(service):
            msg = f"{self.relative(source)} does not match the pyproject.toml files of service {service!r}; run `invoke lock`"
            raise LockError(msg)
        pins = parse_pins(lock, label)
        for target in self.targets:
            check_markers(pins, target.marker_environment(), target.describe())
        return pins

    def installer_pin(self) -> Pin:
        """The tooling lock's pin of the images' installer."""
        tooling_lock = self.root / TOOLING_LOCK
        installer = parse_pins(tooling_lock, self.relative(tooling_lock)).get(INSTALLER) if tooling_lock.is_file() else None
        if installer is None:
            msg = f"{TOOLING_LOCK}: expected a hashed pin of {INSTALLER} (the image installer); run `invoke lock`"
            raise LockError(msg)
        # It goes into every image: its marker, if any, must hold there.
        for target in self.targets:
            check_markers({installer.name: installer}, target.marker_environment(), target.describe())
        return installer

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def service_settings(package: Package, purpose: str) -> ServiceSettings:
    """How the service's image runs it, which `purpose` (e.g. "to build an image") needs: an
    error naming its pyproject.toml when it declares none."""
    if package.service is None:
        msg = (
            f'{package.directory}/pyproject.toml: [tool.wheelpipe.service] is needed {purpose}: kind = "http" '
            f'(with port; port-env, health-path and command optional) or kind = "worker" (command: its console script when it has one)'
        )
        raise RepositoryError(msg)
    return package.service


@dataclass(frozen=True)
class Workspace:
    """Where packages live: [tool.wheelpipe.workspace] glob patterns, relative to the root."""

    services: tuple[str, ...] = (f"{SERVICES_DIR}/*",)
    shared: tuple[str, ...] = (f"{SHARED_DIR}/*",)

    def describe(self) -> str:
        return ", ".join((*self.services, *self.shared))
