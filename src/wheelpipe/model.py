"""The one model of the monorepo that every step reads.

Packages are discovered from the pyproject.toml files under shared/ and services/;
nothing lists them anywhere else. A service's name is its directory name.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import RepositoryError, UnknownServiceError
from .index import PYPI, Indexes
from .target import Target

SHARED_DIR = "shared"
SERVICES_DIR = "services"
REQUIREMENTS_DIR = "requirements"
DOCKERFILES_DIR = "dockerfiles"
# requirements/dev.* hold the tooling lock, so no service may take that name.
# requirements/<name>.* of these hold the tooling lock and the build lock, so no service may
# take their names.
TOOLING_LOCK = "dev"
BUILD_LOCK = "build"
RESERVED_SERVICE_NAMES = {TOOLING_LOCK: "the tooling lock", BUILD_LOCK: "the build lock of sdist-only dependencies"}
# A service's name is the last component of its image repository (<prefix><service>), so it
# must be a path component of Docker's reference grammar.
_DOCKER_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DISTRIBUTION_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)  # PEP 508
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    indexes: Indexes = field(default_factory=Indexes)  # where locks resolve and wheels come from
    resolver: str = "uv"  # [tool.wheelpipe.lock] resolver: "uv" or "pip-tools"
    workspace: Workspace = field(default_factory=lambda: Workspace())
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
        """`--service NAME` or, without it (None), every service; an empty name is unknown."""
        return list(self.services) if name is None else [self.service(name).path.name]

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


def _read_pyproject(path: Path, where: str) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as error:
        msg = f"{where}: cannot be read ({error.strerror or error})"
        raise RepositoryError(msg) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        # TOML is UTF-8 by definition; a comment saved as latin-1 is the usual culprit.
        line = raw.count(b"\n", 0, error.start) + 1
        msg = f"{where}:{line}: not UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start}); TOML files must be UTF-8"
        raise RepositoryError(msg) from None
    if text.startswith("\ufeff"):
        msg = f"{where}: starts with a byte-order mark, which TOML does not allow; save it as UTF-8 without BOM"
        raise RepositoryError(msg)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        msg = f"{where}: not valid TOML: {error}"
        raise RepositoryError(msg) from None
    except RecursionError:
        msg = f"{where}: arrays or inline tables nested too deeply to parse"
        raise RepositoryError(msg) from None


def _load_package(root: Path, directory: Path, kind: str) -> tuple[Package, dict]:
    relative = directory.relative_to(root).as_posix()
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        msg = f"{relative}: no pyproject.toml (every directory the workspace patterns match must be a package; ignore it in git or narrow [tool.wheelpipe.workspace])"
        raise RepositoryError(msg)
    where = f"{relative}/pyproject.toml"
    data = _read_pyproject(pyproject, where)
    project = data.get("project")
    if not isinstance(project, dict):
        msg = f"{where}: expected a [project] table with a name, found {_short(project)}"
        raise RepositoryError(msg)
    name = project.get("name")
    if not isinstance(name, str) or not _DISTRIBUTION_NAME.fullmatch(name):
        msg = f"{where}: [project] name must be a distribution name (letters, digits, '.', '_' or '-', starting and ending with a letter or digit), found {_short(name)}"
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
    table = _wheelpipe_table(data, where).get(name, {})
    if not isinstance(table, dict):
        msg = f"{where}: [tool.wheelpipe.{name}] must be a table, found {_short(table)}"
        raise RepositoryError(msg)
    return table


def _wheelpipe_table(data: dict, where: str) -> dict:
    """[tool.wheelpipe] of a pyproject.toml, or {} when absent."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        msg = f"{where}: [tool] must be a table, found {_short(tool)}"
        raise RepositoryError(msg)
    table = tool.get("wheelpipe", {})
    if not isinstance(table, dict):
        msg = f"{where}: [tool.wheelpipe] must be a table, found {_short(table)}"
        raise RepositoryError(msg)
    return table


def _short(value: object) -> str:
    """A value found in a pyproject.toml, shortened to fit in a one-line message."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _line_of(path: Path, text: str) -> int:
    """Where a string from the parsed TOML stands in the file, for error messages."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
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
    if not isinstance(scripts, dict):
        # A string would otherwise match any command that is a substring of it.
        msg = f"{where}: [project.scripts] must be a table of console scripts, found {_short(scripts)}"
        raise RepositoryError(msg)
    if not isinstance(command, str) or command not in scripts:
        msg = f"{where}: [tool.wheelpipe.service] command must name one of [project.scripts] ({', '.join(scripts) or 'none'}), found {_short(command)}"
        raise RepositoryError(msg)
    # bool is an int to Python: `default-port = true` would otherwise be port 1.
    port_ok = isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
    if not isinstance(port_env, str) or not _ENVIRONMENT_NAME.fullmatch(port_env) or not port_ok:
        msg = f"{where}: [tool.wheelpipe.service] needs port-env (an environment variable name) and default-port (1-65535), found {_short(port_env)} and {_short(port)}"
        raise RepositoryError(msg)
    return ServiceSettings(command=command, port_env=port_env, default_port=port)


def _check_service_name(directory: str, name: str) -> None:
    if not _DOCKER_NAME.fullmatch(name):
        msg = f"{directory}: the service name {name!r} is not a valid Docker repository name (lowercase letters and digits, separated by '.', '_', '__' or dashes)"
        raise RepositoryError(msg)


@dataclass(frozen=True)
class Workspace:
    """Where packages live: [tool.wheelpipe.workspace] glob patterns, relative to the root."""

    services: tuple[str, ...] = (f"{SERVICES_DIR}/*",)
    shared: tuple[str, ...] = (f"{SHARED_DIR}/*",)

    def describe(self) -> str:
        return ", ".join((*self.services, *self.shared))


def _workspace(table: dict) -> Workspace:
    patterns = {}
    for key, default in (("services", Workspace.services), ("shared", Workspace.shared)):
        value = table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v and not v.startswith("/") and ".." not in v.split("/") for v in value):
            msg = f"pyproject.toml: [tool.wheelpipe.workspace] {key} must be a list of glob patterns relative to the root (e.g. [\"apps/*\"]), found {_short(value)}"
            raise RepositoryError(msg)
        patterns[key] = tuple(value)
    return Workspace(**patterns)


def _package_dirs(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Directories the patterns match, except hidden ones and those git ignores (build output,
    a leftover directory someone keeps locally)."""
    found = {p for pattern in patterns for p in root.glob(pattern) if p.is_dir() and not p.name.startswith((".", "_"))}
    ignored = _git_ignored(root, sorted(found))
    return sorted(p for p in found if p not in ignored)


def _git_ignored(root: Path, paths: list[Path]) -> set[Path]:
    if not paths:
        return set()
    listed = "".join(f"{p.relative_to(root).as_posix()}/\0" for p in paths)
    try:
        result = subprocess.run(
            ["git", "check-ignore", "-z", "--stdin"], cwd=root, input=listed.encode(), capture_output=True, check=False
        )
    except FileNotFoundError:
        return set()
    # 0: some are ignored, 1: none are, 128: not a git work tree (then nothing is).
    if result.returncode != 0:
        return set()
    return {root / name.rstrip("/") for name in os.fsdecode(result.stdout).split("\0") if name}


def load_repository(root: Path) -> Repository:
    root = root.resolve()
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        msg = f"{root}: no pyproject.toml; run the pipeline from the monorepo's root"
        raise RepositoryError(msg)
    data = _read_pyproject(pyproject, "pyproject.toml")
    table = _wheelpipe_table(data, "pyproject.toml").get("target")
    if not isinstance(table, dict):
        found = "" if table is None else f", found {_short(table)}"
        msg = f"pyproject.toml: expected a [tool.wheelpipe.target] table declaring the target interpreter and platform{found}"
        raise RepositoryError(msg)
    release = _tool_table(data, "pyproject.toml", "release").get("version")
    try:
        Version(release)
    except (InvalidVersion, TypeError):
        msg = f"pyproject.toml: [tool.wheelpipe.release] version must be a PEP 440 version, found {_short(release)}"
        raise RepositoryError(msg) from None
    repository = Repository(
        root=root,
        target=Target.from_table(table, "pyproject.toml"),
        release_version=release,
        indexes=_indexes(_tool_table(data, "pyproject.toml", "index")),
        resolver=str(_tool_table(data, "pyproject.toml", "lock").get("resolver", "uv")),
        workspace=_workspace(_tool_table(data, "pyproject.toml", "workspace")),
    )

    declared_sources: dict[str, dict] = {}
    service_dirs = _package_dirs(root, repository.workspace.services)
    shared_dirs = _package_dirs(root, repository.workspace.shared)
    both = sorted(set(service_dirs) & set(shared_dirs))
    if both:
        msg = f"{both[0].relative_to(root).as_posix()}: matched as a service and as a shared package by [tool.wheelpipe.workspace] ({repository.workspace.describe()})"
        raise RepositoryError(msg)
    names: dict[str, Path] = {}
    for directory in service_dirs:
        if directory.name in names:
            msg = f"{directory.relative_to(root).as_posix()} and {names[directory.name].relative_to(root).as_posix()}: two services named {directory.name!r} (a service's name is its directory's name)"
            raise RepositoryError(msg)
        names[directory.name] = directory
    for kind, directories in (("shared", shared_dirs), ("service", service_dirs)):
        for directory in directories:
            if kind == "service":
                _check_service_name(directory.relative_to(root).as_posix(), directory.name)
            package, sources = _load_package(root, directory, kind)
            if package.name in repository.packages:
                other = repository.packages[package.name]
                msg = f"{package.directory} and {other.directory} both declare the distribution {package.name!r}"
                raise RepositoryError(msg)
            if kind == "service" and directory.name in RESERVED_SERVICE_NAMES:
                msg = f"{package.directory}: a service cannot be named {directory.name!r}; requirements/{directory.name}.txt is {RESERVED_SERVICE_NAMES[directory.name]}"
                raise RepositoryError(msg)
            repository.packages[package.name] = package
            declared_sources[package.name] = sources

    _link_internal(repository, declared_sources)
    _check_acyclic(repository)
    return repository


def _indexes(table: dict) -> Indexes:
    """[tool.wheelpipe.index]: `url` (default PyPI) and `extra-urls`, in the order searched."""
    url = table.get("url", PYPI)
    extra = table.get("extra-urls", [])
    urls = [url, *extra] if isinstance(extra, list) else None
    if urls is None or not all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in urls):
        msg = f"pyproject.toml: [tool.wheelpipe.index] url and extra-urls must be http(s) URLs, found {table!r}"
        raise RepositoryError(msg)
    return Indexes(tuple(urls))


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
                msg = f"{package.label} depends on internal package {source!r}, which does not exist in the workspace ({repository.workspace.describe()}; found: {known})"
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
