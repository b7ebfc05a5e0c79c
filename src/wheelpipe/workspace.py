"""Reading the monorepo into its model (model.py): the workspace loader.

Packages are discovered from the pyproject.toml files the workspace patterns match (shared/
and services/ by default); nothing lists them anywhere else. A service's name is its
directory's name unless its [tool.wheelpipe.service] names it, or the directory's name is no
Docker name (then its distribution's name). A package whose metadata only its build backend
can give is read through that backend (build/metadata.py): the loader sits above the build
code, the model's types below it.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import includes
from .build import metadata
from .deploy import ChartRegistry, Resources, parse_chart_registry, parse_environments, parse_resources
from .errors import RepositoryError
from .index import PYPI, Indexes
from .model import (
    DEFAULT_HEALTH_PATH,
    DEFAULT_PORT_ENV,
    LEGACY_BACKEND,
    LEGACY_BUILD_SYSTEM,
    PORT_PLACEHOLDER,
    PYTHON_WORDS,
    SERVICE_KINDS,
    BuildSystem,
    HttpService,
    Package,
    PackageLocation,
    Repository,
    ServiceSettings,
    StaleBuildLockError,
    WorkerService,
    Workspace,
)
from .requirements import BUILD_LOCK, RESERVED_SERVICE_NAMES, lock_file
from .target import targets_from_table
from .tomlvalues import matching, refuse_unknown_keys, shown
from .tools import git

# A service's name is the last component of its image repository (<prefix><service>), so it
# must be a path component of Docker's reference grammar.
_DOCKER_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DISTRIBUTION_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)  # PEP 508
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BACKEND = re.compile(r"[A-Za-z_][\w.]*(\s*:\s*[A-Za-z_][\w.]*)?")  # PEP 517: module, or module:object

# A console script's name as a command's first word: a file name in the venv's bin/.
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

_SERVICE_KEYS = {
    "http": ("name", "kind", "command", "port", "default-port", "port-env", "health-path", "resources"),
    "worker": ("name", "kind", "command", "health-command", "resources"),
}

# The [project] keys the model needs; when [project] is missing or declares one of these
# dynamic, only the package's backend can say what they are.
_METADATA_KEYS = ("name", "version", "dependencies")


def _read_pyproject(path: Path, where: str) -> dict[str, Any]:
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


def _load_package(repository: Repository, directory: Path, kind: str, build_lock: Path, root_services: dict[str, dict[str, Any]]) -> tuple[Package, dict[str, Any]]:  # noqa: C901 - the package's metadata from [project] or its backend, then each field checked in turn, each a one-line error naming the file
    """The package in `directory`: from its static [project], else from its build backend run
    in the environment `build_lock` gives (StaleBuildLockError when it cannot)."""
    root = repository.root
    relative = directory.relative_to(root).as_posix()
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        msg = f"{relative}: no pyproject.toml (every directory the workspace patterns match must be a package; ignore it in git or narrow [tool.wheelpipe.workspace])"
        raise RepositoryError(msg)
    where = f"{relative}/pyproject.toml"
    data = _read_pyproject(pyproject, where)
    build_system = _build_system(data, pyproject, where)
    repository.build_systems[relative] = build_system
    outside = includes.find(data, build_system.backend, relative)
    project = data.get("project")
    if project is not None and not isinstance(project, dict):
        msg = f"{where}: expected a [project] table with a name, found {shown(project)}"
        raise RepositoryError(msg)
    # Whoever says them (a pyproject.toml may hold anything), they are checked below.
    name: object
    version: object
    dependencies: object
    if project is None or _dynamic(project, where):
        repository.backend_described.append(relative)
        described = metadata.read_metadata(repository, PackageLocation(relative, directory, outside), build_system, build_lock)
        where = f"{relative}: its build backend ({described.backend})"
        name, version, dependencies = described.name, described.version, list(described.requires)
        project = {"scripts": described.scripts}
        metadata_from = "backend"
    else:
        name, version, dependencies = project.get("name"), project.get("version"), project.get("dependencies", [])
        metadata_from = "pyproject.toml"
    if not isinstance(name, str) or not _DISTRIBUTION_NAME.fullmatch(name):
        msg = f"{where}: [project] name must be a distribution name (letters, digits, '.', '_' or '-', starting and ending with a letter or digit), found {shown(name)}"
        raise RepositoryError(msg)
    if not isinstance(version, str):
        msg = f"{where}: expected a static [project] version string, found {version!r}"
        raise RepositoryError(msg)
    try:
        Version(version)
    except InvalidVersion:
        msg = f"{where}: version {version!r} is not a valid PEP 440 version"
        raise RepositoryError(msg) from None
    if not isinstance(dependencies, list) or not all(isinstance(line, str) for line in dependencies):
        # A bare string would otherwise be read one character per requirement.
        msg = f"{where}: [project] dependencies must be a list of requirement strings, found {dependencies!r}"
        raise RepositoryError(msg)
    requirements = []
    for line in dependencies:
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement as error:
            at = f"{where}:{_line_of(pyproject, line)}" if metadata_from == "pyproject.toml" else where
            # packaging's message draws a caret under the fault on further lines: keep the first.
            reason = str(error).splitlines()[0]
            msg = f"{at}: malformed requirement {line!r} in [project] dependencies: {reason}"
            raise RepositoryError(msg) from None
    service = None
    service_name = ""
    if kind == "service":
        # A backend-described service's console scripts are those its metadata declares.
        declared, table_at = data, f"{relative}/pyproject.toml"
        if relative in root_services:
            # Declared at the root ([tool.wheelpipe.services."<directory>"]), so that a team's
            # packages need no edit to get an image.
            if "service" in _wheelpipe_table(data, table_at):
                msg = f'pyproject.toml: [tool.wheelpipe.services."{relative}"] and {relative}/pyproject.toml\'s [tool.wheelpipe.service] both declare the service; keep one'
                raise RepositoryError(msg)
            declared = {**data, "tool": {**(data.get("tool") or {}), "wheelpipe": {"service": root_services[relative]}}}
            table_at = f'pyproject.toml [tool.wheelpipe.services."{relative}"]'
        service = _service_settings({**declared, "project": project}, table_at)
        service_name, note = _service_name(declared, relative, directory.name, canonicalize_name(name), table_at)
        if note:
            repository.notes.append(note)
    package = Package(
        kind=kind,
        directory=relative,
        path=directory,
        name=canonicalize_name(name),
        version=version,
        requirements=tuple(requirements),
        service=service,
        build_system=build_system,
        metadata_from=metadata_from,
        service_name=service_name,
        includes=outside,
    )
    sources = dict(_tool_table(data, f"{relative}/pyproject.toml", "sources"))
    # A Poetry path dependency (`x = { path = "../../shared/x", develop = true }`) is how a
    # Poetry monorepo names its own packages: a workspace source that must be the package at
    # that path (the staged copy names it plainly, so no wheel carries this machine's path).
    for source, path in includes.poetry_path_dependencies(data, relative).items():
        sources.setdefault(source, {"workspace": True, "path": path})
    return package, sources


def _is_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def _dynamic(project: dict[str, Any], where: str) -> list[str]:
    """Which of name, version and dependencies [project] declares dynamic (PEP 621)."""
    dynamic = project.get("dynamic", [])
    if not isinstance(dynamic, list) or not all(isinstance(key, str) for key in dynamic):
        msg = f"{where}: [project] dynamic must be a list of field names, found {shown(dynamic)}"
        raise RepositoryError(msg)
    return [key for key in _METADATA_KEYS if key in dynamic]


def _build_system(data: dict[str, Any], pyproject: Path, where: str) -> BuildSystem:
    """The package's [build-system], with PEP 517's legacy setuptools backend where it names none."""
    table = data.get("build-system")
    if table is None:
        return LEGACY_BUILD_SYSTEM
    if not isinstance(table, dict):
        msg = f"{where}: [build-system] must be a table, found {shown(table)}"
        raise RepositoryError(msg)
    lines = table.get("requires")
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        msg = f"{where}: [build-system] requires must be a list of requirement strings (PEP 518), found {shown(lines)}"
        raise RepositoryError(msg)
    requires = []
    for line in lines:
        try:
            requires.append(Requirement(line))
        except InvalidRequirement as error:
            msg = f"{where}:{_line_of(pyproject, line)}: malformed requirement {line!r} in [build-system] requires: {str(error).splitlines()[0]}"
            raise RepositoryError(msg) from None
    backend = table.get("build-backend", LEGACY_BACKEND)
    if not isinstance(backend, str) or not _BACKEND.fullmatch(backend.strip()):
        msg = f"{where}: [build-system] build-backend must be a module path, optionally :object (PEP 517), found {shown(backend)}"
        raise RepositoryError(msg)
    paths = table.get("backend-path", [])
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        msg = f"{where}: [build-system] backend-path must be a list of directories, found {shown(paths)}"
        raise RepositoryError(msg)
    return BuildSystem(backend.strip(), tuple(requires), tuple(paths))


def _tool_table(data: dict[str, Any], where: str, name: str) -> dict[str, Any]:
    """[tool.wheelpipe.<name>] of a pyproject.toml, or {} when absent."""
    table = _wheelpipe_table(data, where).get(name, {})
    if not isinstance(table, dict):
        msg = f"{where}: [tool.wheelpipe.{name}] must be a table, found {shown(table)}"
        raise RepositoryError(msg)
    return table


def _wheelpipe_table(data: dict[str, Any], where: str) -> dict[str, Any]:
    """[tool.wheelpipe] of a pyproject.toml, or {} when absent."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        msg = f"{where}: [tool] must be a table, found {shown(tool)}"
        raise RepositoryError(msg)
    table = tool.get("wheelpipe", {})
    if not isinstance(table, dict):
        msg = f"{where}: [tool.wheelpipe] must be a table, found {shown(table)}"
        raise RepositoryError(msg)
    return table


def _line_of(path: Path, text: str) -> int:
    """Where a string from the parsed TOML stands in the file, for error messages."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return number
    return 0


def _service_settings(data: dict[str, Any], where: str) -> ServiceSettings | None:  # noqa: C901 - one check per key of the service table, each a one-line error naming the key
    """[tool.wheelpipe.service], or None when the service has none: locks, wheels and releases
    need no more than [project], and only an image (service_settings) needs to know the kind."""
    if "service" not in _wheelpipe_table(data, where):
        return None
    table = _tool_table(data, where, "service")
    key = "[tool.wheelpipe.service]"
    # Without `kind` the table is what it was before workers existed: an http service's.
    kind = table.get("kind", "http")
    if kind not in SERVICE_KINDS:
        msg = f'{where}: {key} kind must be "http" or "worker", found {shown(kind)}'
        raise RepositoryError(msg)
    for name in table:
        if name in _SERVICE_KEYS[kind]:
            continue
        if name in ("port-env", "default-port", "port", "health-path"):
            msg = f'{where}: {key} {name} is for kind "http"; a worker listens on no port (remove it, or set kind = "http")'
        elif name == "health-command":
            msg = f'{where}: {key} health-command is for kind "worker"; an http service\'s health check is a GET of its health-path (default {DEFAULT_HEALTH_PATH}) on its port'
        else:
            known = ", ".join(dict.fromkeys(k for keys in _SERVICE_KEYS.values() for k in keys))
            msg = f"{where}: {key} has no key {name!r} (known: {known})"
        raise RepositoryError(msg)
    scripts = data["project"].get("scripts", {})
    if not isinstance(scripts, dict):
        # A string would otherwise match any command that is a substring of it.
        msg = f"{where}: [project.scripts] must be a table of console scripts, found {shown(scripts)}"
        raise RepositoryError(msg)
    command = _command(table.get("command"), scripts, where)
    resources = parse_resources(table["resources"], f"{where}: {key} resources") if "resources" in table else Resources()
    if kind == "worker":
        if PORT_PLACEHOLDER in " ".join(command):
            msg = f"{where}: {key} command {shown(list(command))} holds {PORT_PLACEHOLDER}, but a worker has no port"
            raise RepositoryError(msg)
        return WorkerService(command=command, health_command=_health_command(table.get("health-command"), scripts, where), resources=resources)
    if "port" in table and "default-port" in table:
        msg = f"{where}: {key} sets both port and default-port (its older name): keep port"
        raise RepositoryError(msg)
    port = table.get("port", table.get("default-port"))
    # bool is an int to Python: `port = true` would otherwise be port 1.
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
        msg = f'{where}: {key} port must be the port the service listens on (1-65535) for kind "http", found {shown(port)}'
        raise RepositoryError(msg)
    table_where = f"{where}: {key}"
    port_env = matching(
        table, "port-env", DEFAULT_PORT_ENV, _ENVIRONMENT_NAME, where=table_where, expected="the name of the environment variable the service reads its port from (letters, digits, '_')", error=RepositoryError
    )
    health_path = matching(
        table, "health-path", DEFAULT_HEALTH_PATH, _HEALTH_PATH, where=table_where, expected=f"a URL path starting with '/' (no spaces, quotes or '#'), e.g. \"{DEFAULT_HEALTH_PATH}\"", error=RepositoryError
    )
    return HttpService(command=command, port=port, port_env=port_env, health_path=health_path, resources=resources)


# A path (and query) an HTTP GET can ask for as written: what a probe, Docker or a kubelet sends.
_HEALTH_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*")


def _command(value: object, scripts: dict[str, Any], where: str) -> tuple[str, ...]:
    """The command the image runs, exec form. Without it, the service's one console script."""
    if value is None:
        # The console script is the command when there is no other to choose.
        if len(scripts) != 1:
            found = f"declares several ({', '.join(scripts)}): set command to one of them" if scripts else "declares none to infer it from"
            msg = f"{where}: [tool.wheelpipe.service] command is not set and [project.scripts] {found}"
            raise RepositoryError(msg)
        return (next(iter(scripts)),)
    example = f'e.g. "{next(iter(scripts), "my-service")}", ["uvicorn", "my_app.main:app", "--host", "0.0.0.0", "--port", "{PORT_PLACEHOLDER}"] or "python -m my_app"'
    return _exec_words(value, "command", example, where)


def _health_command(value: object, scripts: dict[str, Any], where: str) -> tuple[str, ...]:
    """A worker's health command, () for none: the process itself is then its health."""
    if value is None:
        return ()
    return _exec_words(value, "health-command", f'e.g. ["{next(iter(scripts), "my-worker")}", "healthcheck"]', where)


def _exec_words(value: object, name: str, example: str, where: str) -> tuple[str, ...]:
    """A command in exec form: a string of words (split as a shell would, but no shell ever runs
    it) or a list of words. Its first word is a console script of the service's venv (its own,
    or a dependency's such as uvicorn or gunicorn: the image build checks that it is there), or
    python -m module."""
    key = f"[tool.wheelpipe.service] {name}"
    words: list[str] | None = None
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as error:
            msg = f"{where}: {key} {shown(value)} cannot be split into words ({error}); write it as a list of words"
            raise RepositoryError(msg) from None
    elif isinstance(value, list) and all(isinstance(word, str) for word in value):
        words = list(value)
    if not words or not all(words) or any(c in word for word in words for c in "\n\r\0"):
        msg = f"{where}: {key} must be a console script and its arguments, as a string or a list of words ({example}); found {shown(value)}"
        raise RepositoryError(msg)
    program = words[0]
    if program in PYTHON_WORDS:
        if len(words) < 3 or words[1] != "-m" or not _MODULE.fullmatch(words[2]):
            msg = f"{where}: {key} runs the venv's {program}, which only `{program} -m <module>` may do (no script files, no -c); found {shown(value)}"
            raise RepositoryError(msg)
    elif not _SCRIPT_NAME.fullmatch(program):
        msg = f"{where}: {key} must start with the name of a console script in the service's venv (not a path; no shell), {example}; found {shown(value)}"
        raise RepositoryError(msg)
    return tuple(words)


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _service_name(data: dict[str, Any], directory: str, directory_name: str, distribution: str, where: str) -> tuple[str, str | None]:
    """The service's name, and a line saying where it came from when that is not what a team
    would guess (its directory's name). A service's name is the last component of its image
    repository and its lock's file name, so it must be a Docker repository name; a directory
    named otherwise (OrderManager) is never renamed: the distribution name stands in."""
    declared = _wheelpipe_table(data, where).get("service", {})
    name = declared.get("name") if isinstance(declared, dict) else None
    if name is not None:
        if not (isinstance(name, str) and _DOCKER_NAME.fullmatch(name)):
            msg = f"{where}: [tool.wheelpipe.service] name must be a Docker repository name (lowercase letters and digits, separated by '.', '_', '__' or dashes), found {shown(name)}"
            raise RepositoryError(msg)
        note = None if name == directory_name else f"{directory}: service {name!r}, as [tool.wheelpipe.service] name says"
        return name, note
    if _DOCKER_NAME.fullmatch(directory_name):
        return directory_name, None
    note = (
        f"{directory}: service {distribution!r}, its distribution name: its directory's name {directory_name!r} is not a Docker "
        f"repository name (lowercase letters and digits, separated by '.', '_', '__' or dashes); [tool.wheelpipe.service] name = \"...\" chooses another"
    )
    return distribution, note


def _workspace(table: dict[str, Any]) -> Workspace:
    patterns = {}
    for key, default in (("services", Workspace.services), ("shared", Workspace.shared)):
        value = table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v and not v.startswith("/") and ".." not in v.split("/") for v in value):
            msg = f"pyproject.toml: [tool.wheelpipe.workspace] {key} must be a list of glob patterns relative to the root (e.g. [\"apps/*\"]), found {shown(value)}"
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
        result = git(root, "check-ignore", "-z", "--stdin", stdin=listed, check=False)
    except FileNotFoundError:
        return set()
    # 0: some are ignored, 1: none are, 128: not a git work tree (then nothing is).
    if result.returncode != 0:
        return set()
    return {root / name.rstrip("/") for name in result.stdout.split("\0") if name}


def nearest_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` whose pyproject.toml declares
    [tool.wheelpipe.target]: the monorepo `start` lies in. None when there is none; one that
    cannot be read does not count (load_repository says why when it is asked to)."""
    for directory in (start, *start.parents):
        try:
            data = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if isinstance(data.get("tool", {}).get("wheelpipe", {}).get("target"), dict):
            return directory
    return None


def load_repository(root: Path, build_lock: Path | None = None) -> Repository:
    """The repository at `root`. Packages whose metadata only their backend can give are read
    with the build environment of `build_lock` (default requirements/build.txt; `invoke lock`
    passes the one it is making)."""
    root = root.resolve()
    build_lock = build_lock or root / BUILD_LOCK
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        msg = f"{root}: no pyproject.toml; run the pipeline from the monorepo's root"
        raise RepositoryError(msg)
    data = _read_pyproject(pyproject, "pyproject.toml")
    table = _wheelpipe_table(data, "pyproject.toml").get("target")
    if not isinstance(table, dict):
        found = "" if table is None else f", found {shown(table)}"
        msg = f"pyproject.toml: expected a [tool.wheelpipe.target] table declaring the target interpreter and platform{found}"
        raise RepositoryError(msg)
    release, chart_registry = _release_settings(_tool_table(data, "pyproject.toml", "release"))
    resolver, one_version = _lock_settings(_tool_table(data, "pyproject.toml", "lock"))
    repository = Repository(
        root=root,
        targets=targets_from_table(table, "pyproject.toml"),
        release_version=release,
        chart_registry=chart_registry,
        indexes=_indexes(_tool_table(data, "pyproject.toml", "index")),
        resolver=resolver,
        one_version=one_version,
        workspace=_workspace(_tool_table(data, "pyproject.toml", "workspace")),
        environments=parse_environments(_tool_table(data, "pyproject.toml", "deploy")),
    )

    declared_sources: dict[str, dict[str, Any]] = {}
    service_dirs = _package_dirs(root, repository.workspace.services)
    shared_dirs = _package_dirs(root, repository.workspace.shared)
    both = sorted(set(service_dirs) & set(shared_dirs))
    if both:
        msg = f"{both[0].relative_to(root).as_posix()}: matched as a service and as a shared package by [tool.wheelpipe.workspace] ({repository.workspace.describe()})"
        raise RepositoryError(msg)
    names: dict[str, Package] = {}
    root_services = _root_services(_tool_table(data, "pyproject.toml", "services"), {d.relative_to(root).as_posix() for d in service_dirs})
    for kind, directories in (("shared", shared_dirs), ("service", service_dirs)):
        for directory in directories:
            try:
                package, sources = _load_package(repository, directory, kind, build_lock, root_services)
            except StaleBuildLockError as error:
                # Every other package is still read, so that any other fault is reported;
                # `invoke lock` gets past this one (it reads the model again with its new lock).
                repository._unread = repository._unread or str(error)
                continue
            if package.name in repository._packages:
                other = repository._packages[package.name]
                msg = f"{package.directory} and {other.directory} both declare the distribution {package.name!r}"
                raise RepositoryError(msg)
            if kind == "service":
                _check_service_unique(package, names)
            repository._packages[package.name] = package
            declared_sources[package.name] = sources

    if repository._unread is None:
        _link_internal(repository, declared_sources)
        _check_acyclic(repository)
    return repository


def _root_services(table: dict[str, Any], directories: set[str]) -> dict[str, dict[str, Any]]:
    """[tool.wheelpipe.services]: a service table per service directory, at the root."""
    for key, value in table.items():
        if key not in directories:
            known = ", ".join(sorted(directories)) or "none"
            msg = f"pyproject.toml: [tool.wheelpipe.services] {key!r} is no service directory (the workspace's: {known})"
            raise RepositoryError(msg)
        if not isinstance(value, dict):
            msg = f'pyproject.toml: [tool.wheelpipe.services."{key}"] must be a table like [tool.wheelpipe.service], found {shown(value)}'
            raise RepositoryError(msg)
    return table


def _check_service_unique(package: Package, names: dict[str, Package]) -> None:
    """A service's name is its lock's and its image's: two services cannot share one, nor can a
    service take the name of a lock that is not a service's."""
    name = package.service_name
    if name in RESERVED_SERVICE_NAMES:
        msg = f"{package.directory}: a service cannot be named {name!r}; {lock_file(name)} is {RESERVED_SERVICE_NAMES[name]} (set [tool.wheelpipe.service] name)"
        raise RepositoryError(msg)
    if name in names:
        msg = f"{package.directory} and {names[name].directory}: two services named {name!r} (set [tool.wheelpipe.service] name in one of them)"
        raise RepositoryError(msg)
    names[name] = package


# [tool.wheelpipe.lock]: each key, the Python type of its value, and how to say it.
_LOCK_KEYS: dict[str, tuple[type, str]] = {
    "resolver": (str, 'a string ("uv" or "pip-tools")'),
    "one-version": (bool, "true or false"),
}


def _lock_settings(table: dict[str, Any]) -> tuple[str, bool]:
    """[tool.wheelpipe.lock]: the resolver and the one-version policy, as Repository fields."""
    refuse_unknown_keys(table, _LOCK_KEYS, "pyproject.toml: [tool.wheelpipe.lock]", RepositoryError)
    for key, (kind, described) in _LOCK_KEYS.items():
        if key in table and not isinstance(table[key], kind):
            msg = f"pyproject.toml: [tool.wheelpipe.lock] {key} must be {described}, found {shown(table[key])}"
            raise RepositoryError(msg)
    return table.get("resolver", "uv"), table.get("one-version", False)


_RELEASE_KEYS = ("version", "chart-registry")


def _release_settings(table: dict[str, Any]) -> tuple[str, ChartRegistry | None]:
    """[tool.wheelpipe.release]: the release version and where the chart is pushed."""
    refuse_unknown_keys(table, _RELEASE_KEYS, "pyproject.toml: [tool.wheelpipe.release]", RepositoryError)
    version = table.get("version")
    if not isinstance(version, str) or not _is_version(version):
        msg = f"pyproject.toml: [tool.wheelpipe.release] version must be a PEP 440 version, found {shown(version)}"
        raise RepositoryError(msg)
    normal = str(Version(version))
    if version != normal:
        # Refused, not normalised: the version names the archive, the tag and the chart, and
        # one release written two ways ("v1.0", "1.0") would be two names for one thing, or
        # a pyproject.toml that says one version while everything it made says another.
        msg = f"pyproject.toml: [tool.wheelpipe.release] version {version!r} is not in its normal form: write {normal!r}"
        raise RepositoryError(msg)
    registry = table.get("chart-registry")
    return version, None if registry is None else parse_chart_registry(registry, "pyproject.toml: [tool.wheelpipe.release] chart-registry")


def _indexes(table: dict[str, Any]) -> Indexes:
    """[tool.wheelpipe.index]: `url` (default PyPI) and `extra-urls`, in the order searched."""
    url = table.get("url", PYPI)
    extra = table.get("extra-urls", [])
    urls = [url, *extra] if isinstance(extra, list) else None
    if urls is None or not all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in urls):
        msg = f"pyproject.toml: [tool.wheelpipe.index] url and extra-urls must be http(s) URLs, found {table!r}"
        raise RepositoryError(msg)
    return Indexes(tuple(urls))


def _direct_reference(package: Package, requirement: Requirement, internal: bool) -> str:
    """Why a `name @ URL` requirement cannot be shipped, and what to write instead."""
    found = f"{package.label} requires {requirement.name} @ {requirement.url}"
    if internal:
        # A Poetry path dependency ({ path = "../x", develop = true }) is the usual source.
        return (
            f"{found}, a path on this machine that its wheel would carry; require {requirement.name} by name "
            f"or version and mark it [tool.wheelpipe.sources] {requirement.name} = {{ workspace = true }}"
        )
    return f"{found}, a direct reference; the locks pin released versions from the index: require a version of {requirement.name} instead"


def _link_internal(repository: Repository, declared_sources: dict[str, dict[str, Any]]) -> None:
    """Mark which requirements are first-party packages of this monorepo."""
    for name, package in list(repository.packages.items()):
        where = f"{package.directory}/pyproject.toml"
        for requirement in package.requirements:
            if requirement.url:
                raise RepositoryError(_direct_reference(package, requirement, canonicalize_name(requirement.name) in repository.packages))
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
            path = spec.get("path")
            if path is not None and path != repository.packages[wanted].directory:
                msg = (
                    f"{where}: [tool.poetry.dependencies] {source} = {{ path = ... }} names {path}, but the workspace's "
                    f"{wanted} is {repository.packages[wanted].directory}: point the path at it"
                )
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
