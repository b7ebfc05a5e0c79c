"""The one model of the monorepo that every step reads.

Packages are discovered from the pyproject.toml files under shared/ and services/;
nothing lists them anywhere else. A service's name is its directory name.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import RepositoryError, UnknownServiceError
from .target import Target

SHARED_DIR = "shared"
SERVICES_DIR = "services"
REQUIREMENTS_DIR = "requirements"
DOCKERFILES_DIR = "dockerfiles"
# requirements/dev.* hold the tooling lock, so no service may take that name.
RESERVED_SERVICE_NAME = "dev"


@dataclass(frozen=True)
class ServiceSettings:
    """How a service's image runs it: [tool.wheelpipe.service] in its pyproject.toml."""

    command: str  # console script that serves with gunicorn and has a `healthcheck` subcommand
    port_env: str
    default_port: int


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

    @property
    def label(self) -> str:
        return f"{self.directory} ({self.name})"

    @property
    def third_party(self) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requirements if canonicalize_name(r.name) not in self.internal)


@dataclass
class Repository:
    root: Path
    target: Target
    release_version: str
    packages: dict[str, Package] = field(default_factory=dict)  # by canonical distribution name

    @cached_property
    def services(self) -> dict[str, Package]:
        """Services by their name, which is their directory name."""
        found = (p for p in self.packages.values() if p.kind == "service")
        return {p.path.name: p for p in sorted(found, key=lambda p: p.path.name)}

    def service(self, name: str) -> Package:
        try:
            return self.services[name]
        except KeyError:
            raise UnknownServiceError(name, list(self.services)) from None

    def select_services(self, name: str | None) -> list[str]:
        """`--service NAME` or, without it, every service."""
        return [self.service(name).path.name] if name else list(self.services)

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
        return self.root / REQUIREMENTS_DIR / f"{service}.txt"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _read_pyproject(path: Path) -> dict:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as error:
        msg = f"{path}: not valid TOML: {error}"
        raise RepositoryError(msg) from None


def _load_package(root: Path, directory: Path, kind: str) -> tuple[Package, dict]:
    relative = directory.relative_to(root).as_posix()
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        msg = f"{relative}: no pyproject.toml (every directory under {directory.parent.name}/ must be a PEP 621 project)"
        raise RepositoryError(msg)
    data = _read_pyproject(pyproject)
    where = f"{relative}/pyproject.toml"
    project = data.get("project")
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        msg = f"{where}: expected a [project] table with a name"
        raise RepositoryError(msg)
    version = project.get("version")
    if not isinstance(version, str):
        msg = f"{where}: expected a static [project] version string, found {version!r}"
        raise RepositoryError(msg)
    try:
        Version(version)
    except InvalidVersion:
        msg = f"{where}: version {version!r} is not a valid PEP 440 version"
        raise RepositoryError(msg) from None
    dependencies = project.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(line, str) for line in dependencies):
        # A bare string would otherwise be read one character per requirement.
        msg = f"{where}: [project] dependencies must be a list of requirement strings, found {dependencies!r}"
        raise RepositoryError(msg)
    requirements = []
    for line in dependencies:
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement as error:
            number = _line_of(pyproject, line)
            # packaging's message draws a caret under the fault on further lines: keep the first.
            reason = str(error).splitlines()[0]
            msg = f"{where}:{number}: malformed requirement {line!r} in [project] dependencies: {reason}"
            raise RepositoryError(msg) from None
    service = None
    if kind == "service":
        service = _service_settings(data, where)
    package = Package(
        kind=kind,
        directory=relative,
        path=directory,
        name=canonicalize_name(project["name"]),
        version=version,
        requirements=tuple(requirements),
        service=service,
    )
    sources = _tool_table(data, where, "sources")
    return package, sources


def _tool_table(data: dict, where: str, name: str) -> dict:
    """[tool.wheelpipe.<name>] of a pyproject.toml, or {} when absent."""
    table = data.get("tool", {}).get("wheelpipe", {})
    table = table.get(name, {}) if isinstance(table, dict) else table
    if not isinstance(table, dict):
        msg = f"{where}: [tool.wheelpipe.{name}] must be a table, found {table!r}"
        raise RepositoryError(msg)
    return table


def _line_of(path: Path, text: str) -> int:
    """Where a string from the parsed TOML stands in the file, for error messages."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    return 0


def _service_settings(data: dict, where: str) -> ServiceSettings:
    table = _tool_table(data, where, "service")
    if not table:
        msg = f"{where}: a service needs a [tool.wheelpipe.service] table (command, port-env, default-port)"
        raise RepositoryError(msg)
    command, port_env, port = table.get("command"), table.get("port-env"), table.get("default-port")
    scripts = data["project"].get("scripts", {})
    if not isinstance(command, str) or command not in scripts:
        msg = f"{where}: [tool.wheelpipe.service] command must name one of [project.scripts] ({', '.join(scripts) or 'none'}), found {command!r}"
        raise RepositoryError(msg)
    if not isinstance(port_env, str) or not isinstance(port, int) or not 0 < port < 65536:
        msg = f"{where}: [tool.wheelpipe.service] needs port-env (a string) and default-port (1-65535), found {port_env!r} and {port!r}"
        raise RepositoryError(msg)
    return ServiceSettings(command=command, port_env=port_env, default_port=port)


def _package_dirs(root: Path, container: str) -> list[Path]:
    base = root / container
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def load_repository(root: Path) -> Repository:
    root = root.resolve()
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        msg = f"{root}: no pyproject.toml; run the pipeline from the monorepo's root"
        raise RepositoryError(msg)
    data = _read_pyproject(pyproject)
    table = data.get("tool", {}).get("wheelpipe", {}).get("target")
    if not isinstance(table, dict):
        msg = "pyproject.toml: expected a [tool.wheelpipe.target] table declaring the target interpreter and platform"
        raise RepositoryError(msg)
    release = _tool_table(data, "pyproject.toml", "release").get("version")
    try:
        Version(release)
    except (InvalidVersion, TypeError):
        msg = f"pyproject.toml: [tool.wheelpipe.release] version must be a PEP 440 version, found {release!r}"
        raise RepositoryError(msg) from None
    repository = Repository(root=root, target=Target.from_table(table, "pyproject.toml"), release_version=release)

    declared_sources: dict[str, dict] = {}
    for kind, container in (("shared", SHARED_DIR), ("service", SERVICES_DIR)):
        for directory in _package_dirs(root, container):
            package, sources = _load_package(root, directory, kind)
            if package.name in repository.packages:
                other = repository.packages[package.name]
                msg = f"{package.directory} and {other.directory} both declare the distribution {package.name!r}"
                raise RepositoryError(msg)
            if kind == "service" and directory.name == RESERVED_SERVICE_NAME:
                msg = f"{package.directory}: a service cannot be named {RESERVED_SERVICE_NAME!r}; requirements/{RESERVED_SERVICE_NAME}.txt is the tooling lock"
                raise RepositoryError(msg)
            repository.packages[package.name] = package
            declared_sources[package.name] = sources

    _link_internal(repository, declared_sources)
    _check_acyclic(repository)
    return repository


def _link_internal(repository: Repository, declared_sources: dict[str, dict]) -> None:
    """Mark which requirements are first-party packages of this monorepo."""
    for name, package in list(repository.packages.items()):
        where = f"{package.directory}/pyproject.toml"
        # A name declared as a workspace source must exist here: otherwise pip would
        # quietly fetch a same-named (possibly hostile) package from the index.
        for source, spec in declared_sources[name].items():
            wanted = canonicalize_name(source)
            if not (isinstance(spec, dict) and spec.get("workspace") is True):
                msg = f"{where}: [tool.wheelpipe.sources] {source} must be {{ workspace = true }}"
                raise RepositoryError(msg)
            if wanted not in repository.packages:
                known = ", ".join(sorted(repository.packages))
                msg = f"{package.label} depends on internal package {source!r}, which does not exist under {SHARED_DIR}/ or {SERVICES_DIR}/ (found: {known})"
                raise RepositoryError(msg)
            if wanted not in {canonicalize_name(r.name) for r in package.requirements}:
                msg = f"{where}: [tool.wheelpipe.sources] names {source!r}, which is not in [project] dependencies"
                raise RepositoryError(msg)
        # An internal name always means the monorepo's package, declared or not.
        internal = tuple(
            sorted({canonicalize_name(r.name) for r in package.requirements} & set(repository.packages))
        )
        if name in internal:
            msg = f"{package.label} depends on itself"
            raise RepositoryError(msg)
        repository.packages[name] = replace(package, internal=internal)


def _check_acyclic(repository: Repository) -> None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = "visiting"
        stack.append(name)
        for dependency in repository.packages[name].internal:
            if state.get(dependency) == "visiting":
                cycle = stack[stack.index(dependency) :] + [dependency]
                labels = " -> ".join(repository.packages[n].label for n in cycle)
                msg = f"dependency cycle between internal packages: {labels}"
                raise RepositoryError(msg)
            if dependency not in state:
                visit(dependency)
        stack.pop()
        state[name] = "done"

    for name in sorted(repository.packages):
        if name not in state:
            visit(name)
