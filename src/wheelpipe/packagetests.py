"""The first-party packages' tests run against their built wheels, as those ship.

A pytest plugin, registered as wheelpipe's `pytest11` entry point, so every pytest run in a
venv that has wheelpipe loads it. In a repository whose root pyproject.toml declares
[tool.wheelpipe.target] it installs the current wheelhouse's first-party wheels into a
directory of their own (once per set of wheels) and puts that first on sys.path: a package's
tests import what was built, a compiled extension included, never its raw src/ directory.
A wheelhouse that is missing, or older than a package's sources, stops the run before any of
that package's tests is collected, saying to run `invoke build-wheels`; the pipeline's own
tests need no wheelhouse and never stop for it.

The third-party packages those tests import come from the tooling venv, which is the
environment of a service only when it has installed exactly the versions that service's
lock pins. A package used by a service whose pins differ (services may pin different
versions: each lock stands alone) has its tests run again in that service's own environment:
the service's install manifest installed from the wheelhouse, offline, into a directory of
its own that comes first on the path of a pytest of its own. Services whose third-party pins
are the same share one such environment; when the tooling venv is every user's environment,
as when the services agree and the venv is installed from the tooling lock, nothing extra runs.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .build import firstparty
from .console import quiet
from .errors import PipelineError
from .lockfile import parse_pins
from .model import Repository
from .tools import run
from .wheelhouse import STORE, WHEELHOUSE, BuiltOrigin, Wheelhouse, open_wheelhouse
from .workspace import load_repository, nearest_root

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr, TracebackStyle

# Under the wheelhouse store: one installed directory per set of first-party wheels, and one
# per service environment (a service's install manifest) some package's tests run in.
SITES = "test-sites"
ENVIRONMENTS = "test-environments"
# pytest's -p name of this plugin (its pytest11 entry point): a service environment's pytest
# runs without it, its packages being installed already.
PLUGIN = "wheelpipe"
_REBUILD = "run `invoke build-wheels` (`invoke test` does)"


@dataclass(frozen=True)
class ServiceEnvironment:
    """What a service installs, as some package's tests run in it: the services whose
    third-party pins it holds, and the install manifest it is made from."""

    services: tuple[str, ...]
    manifest: Path  # wheelhouse/install/<the first of services>.txt, in the current generation
    wheelhouse: Path  # that generation's directory, where the manifest's wheels are

    @property
    def name(self) -> str:
        return f"in the environment of {', '.join(self.services)}"


@dataclass(frozen=True)
class Runs:
    """Where a package's tests run: in this process (the tooling venv is the environment of
    one of the services using it, or no service uses it), and in each environment of a
    service using it whose pins the tooling venv does not have."""

    in_process: bool
    environments: tuple[ServiceEnvironment, ...] = ()


@dataclass(frozen=True)
class Site:
    """Where the first-party wheels are installed for the tests, what keeps a package's
    tests from running, and where else they run (both by the package's directory)."""

    path: Path | None
    problems: dict[Path, str] = field(default_factory=dict)
    runs: dict[Path, Runs] = field(default_factory=dict)


def prepare(root: Path) -> Site:
    """The installed first-party wheels of the repository at `root`, checked against its
    working tree; nothing when the repository has no first-party package."""
    try:
        repo = load_repository(root)
    except PipelineError:
        return Site(None)  # every command says why; the pipeline's own tests need no more
    if not repo.packages:
        return Site(None)
    try:
        house = open_wheelhouse(root)
    except PipelineError as error:
        why = f"the first-party packages' tests run against their built wheels, and {error}"
        return Site(None, {p.path: why for p in repo.packages.values()})
    built = {e.name: (e, e.origin) for e in house.entries.values() if isinstance(e.origin, BuiltOrigin)}
    source = firstparty.WorkingTree(root)
    problems = {}
    for package in repo.packages.values():
        if package.name not in built:
            problems[package.path] = f"{WHEELHOUSE}/ holds no wheel of {package.label}, whose tests run against it; {_REBUILD}"
            continue
        entry, origin = built[package.name]
        if origin.source_sha256 != firstparty.fingerprint(source, package):
            problems[package.path] = f"{WHEELHOUSE}/{entry.file} is older than {package.directory}, whose tests run against it; {_REBUILD}"
    wheels = sorted(house.path / e.file for e, _ in built.values())
    digest = hashlib.sha256("\n".join(sorted(e.sha256 for e, _ in built.values())).encode()).hexdigest()
    site = root / STORE / SITES / digest[:16]
    if not site.is_dir():
        _install([str(wheel) for wheel in wheels], site, "installing the first-party wheels for their tests")
    return Site(site, problems, _runs(repo, house))


def _runs(repo: Repository, house: Wheelhouse) -> dict[Path, Runs]:
    """Where each package's tests run, decided from the services' install manifests and
    what the tooling venv (this interpreter) has installed."""
    first_party = set(repo.packages)
    pins: dict[str, frozenset[tuple[str, str]]] = {}
    for service in repo.services:
        manifest = house.install_manifest(service, repo.target)
        if manifest.is_file():  # else verify-wheelhouse and build-wheels say why
            listed = parse_pins(manifest, f"{WHEELHOUSE}/{manifest.relative_to(house.path).as_posix()}").values()
            pins[service] = frozenset((pin.name, pin.version) for pin in listed if pin.name not in first_party)
    tooling = {service: all(_installed_version(name) == version for name, version in found) for service, found in pins.items()}
    runs = {}
    for package in repo.packages.values():
        users = [s for s in repo.services_using(package.name) if s in pins]
        elsewhere: dict[frozenset[tuple[str, str]], list[str]] = {}
        for service in users:
            if not tooling[service]:
                elsewhere.setdefault(pins[service], []).append(service)
        environments = tuple(ServiceEnvironment(tuple(services), house.install_manifest(services[0], repo.target), house.path) for services in elsewhere.values())
        runs[package.path] = Runs(not users or any(tooling[s] for s in users), environments)
    return runs


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment_site(root: Path, environment: ServiceEnvironment) -> Path:
    """The service environment installed (once per install manifest) from the wheelhouse, offline."""
    digest = hashlib.sha256(environment.manifest.read_bytes()).hexdigest()
    site = root / STORE / ENVIRONMENTS / digest[:16]
    if not site.is_dir():
        arguments = ["--require-hashes", "--only-binary", ":all:", "--find-links", str(environment.wheelhouse), "-r", str(environment.manifest)]
        _install(arguments, site, f"installing the environment of {', '.join(environment.services)} for the packages' tests")
    return site


def _install(arguments: list[str], site: Path, what: str) -> None:
    """Wheels installed side by side into `site`, from the files alone, all or nothing."""
    site.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="partial-", dir=site.parent) as tmp:
        staged = Path(tmp) / "site"
        # uv, the tooling's: from the wheel files alone (no index, no cache, no configuration).
        with quiet():
            run(
                [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--offline", "--no-index", "--no-cache", "--no-deps",
                 "--python", sys.executable, "--target", staged, *arguments],
                what=what,
            )
        try:
            staged.rename(site)
        except OSError:
            if not site.is_dir():  # not another run's copy of the same wheels: a real failure
                raise


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    """Before any conftest.py is imported (a package's tests/conftest.py imports the package)."""
    # pytest's rootdir is where its configuration is, or else the arguments' common
    # directory: the monorepo is the nearest directory at or above it declaring a target.
    start = early_config.rootpath.resolve()
    root = nearest_root(start)
    if root is None:
        return
    site = prepare(root)
    early_config.stash[_SITE] = (root, site)
    if site.path is not None:
        sys.path.insert(0, str(site.path))
    # Before collection, so the reason is pytest's one ERROR line: the first package among
    # the paths to be collected whose wheel is missing or older than its files.
    here = early_config.invocation_params.dir
    named = [(here / arg.split("::")[0]).resolve() for arg in args if not arg.startswith("-") and (here / arg.split("::")[0]).exists()]
    collected = named or [(root / path).resolve() for path in early_config.getini("testpaths")] or [root]
    for directory, problem in sorted(site.problems.items()):
        if any(directory.is_relative_to(path) or path.is_relative_to(directory) for path in collected):
            raise pytest.UsageError(problem)


_SITE = pytest.StashKey[tuple[Path, Site]]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """A package's collected tests (after -k and the like) also run in each environment of a
    service using it that the tooling venv is not, as one item per environment; when it is the
    environment of none of its services, they run only there."""
    root, site = config.stash.get(_SITE, (None, Site(None)))
    if root is None or not any(runs.environments for runs in site.runs.values()):
        return
    by_package: dict[Path, list[pytest.Item]] = {}
    for item in items:
        package = next((d for d in site.runs if item.path.is_relative_to(d)), None)
        if package is not None and site.runs[package].environments:
            by_package.setdefault(package, []).append(item)
    added: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for package, collected in by_package.items():
        runs = site.runs[package]
        if not runs.in_process:
            deselected += collected
        tests = tuple(f"{item.path}::{item.nodeid.split('::', 1)[1]}" if "::" in item.nodeid else str(item.path) for item in collected)
        where = package.relative_to(root).as_posix()
        # A node id's path is relative to pytest's rootdir, as its collected items' are.
        tests_dir = Path(os.path.relpath(package / "tests", config.rootpath)).as_posix()
        for environment in runs.environments:
            name = f"{where} {environment.name}"
            added.append(ServiceEnvironmentTests.from_parent(session, name=name, nodeid=f"{tests_dir}::{environment.name}", root=root, environment=environment, tests=tests))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]
    items.extend(added)


class ServiceTestsFailed(Exception):
    """A package's tests failed in a service's environment; the message is their pytest's output."""


class ServiceEnvironmentTests(pytest.Item):
    """A package's tests, run by a pytest of their own in a service's environment."""

    def __init__(self, *, root: Path, environment: ServiceEnvironment, tests: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root, self.environment, self.tests = root, environment, tests

    def runtest(self) -> None:
        site = environment_site(self.root, self.environment)
        # Its own pytest: a process holds one version of each module. The service's
        # distributions come first on its path; pytest itself and what only the tests need
        # come from the tooling venv behind them.
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", f"no:{PLUGIN}", "-p", "no:xdist", *self.tests]
        with quiet():
            result = run(argv, what=f"the tests {self.environment.name}", cwd=self.root, env={"PYTHONPATH": str(site)}, check=False)
        if result.returncode != 0:
            raise ServiceTestsFailed(f"{self.name}: pytest exited {result.returncode}\n{result.stdout}{result.stderr}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: TracebackStyle | None = None) -> str | TerminalRepr:
        if isinstance(excinfo.value, ServiceTestsFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name
