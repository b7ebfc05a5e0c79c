"""The first-party packages' PEP 517 backends, and the build environment they run in.

Every backend a first-party package declares in [build-system] requires is locked with
hashes in requirements/build.txt by `invoke lock`, with what the sdist-only dependencies
need to build. The build environment is that lock installed hash-checked and offline into a
venv of this interpreter (environment.host_environment, the one way a build lock is installed),
kept in the user's cache under a key of the lock's pins and hashes, the target and the
interpreter: the next command reuses it, a changed pin or hash makes another.

What builds a package is the distribution in that environment providing its build-backend
module, recorded as name==version in the manifest, so that a changed backend rebuilds
exactly the packages it builds. A package whose [project] is not static gets its name,
version, dependencies and console scripts from its backend (prepare_metadata_for_build_wheel
on a staged copy of its files), cached in .wheelhouse/metadata/ by those files' fingerprint
and the backend.
"""

from __future__ import annotations

import configparser
import email.parser
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import tomllib
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..console import report
from ..errors import LockError, PipelineError, RepositoryError, ToolError
from ..fsutil import write_atomic
from ..lockfile import Pin, check_markers, parse_pins
from ..model import BuildSystem, Package, PackageLocation, Repository, StaleBuildLockError
from ..requirements import BUILD_LOCK
from . import firstparty
from .environment import environment_digest, host_environment, require_locked

# Inside the wheelhouse store (wheelhouse.STORE), which git ignores.
METADATA_CACHE = ".wheelhouse/metadata"
# Requires-Dist entries of an optional dependency group: not what installing the package needs.
_EXTRA_MARKER = re.compile(r"\bextra\s*[=!]=|[=!]=\s*extra\b")
# poetry-core's last word on a version constraint it cannot read (ParseConstraintError).
# Its last line, not the traceback's quote of the source that raised it.
_POETRY_CONSTRAINT = re.compile(r"^[\w.]*ParseConstraintError: Could not parse version constraint: (?P<constraint>.*)$", re.MULTILINE)
POETRY_CONSTRAINT_EXPECTED = 'a version constraint ("*" for any version, "^1.2", ">=1.2,<2")'
# poetry-core's schema check: "The Poetry configuration is invalid:", then "  - <key> <what>" each.
_POETRY_SCHEMA = re.compile(r"^\s+- (?P<key>tool\.poetry\.[\w.-]+) (?P<what>.+)$", re.MULTILINE)


class BackendError(PipelineError):
    """A first-party package's build backend cannot be set up, found or asked."""


@dataclass(frozen=True)
class BuildEnvironment:
    """The build lock installed into a venv: the interpreter every first-party backend runs with."""

    python: str
    site_packages: Path

    @cached_property
    def _providers(self) -> dict[str, str]:
        """Each file the environment's distributions installed, mapped to name==version."""
        found: dict[str, str] = {}
        for dist in metadata.distributions(path=[str(self.site_packages)]):
            spec = f"{canonicalize_name(dist.metadata['Name'])}=={dist.version}"
            for file in dist.files or ():
                found.setdefault(file.as_posix(), spec)
        return found

    def backend(self, package: Package | PackageLocation, system: BuildSystem) -> str:
        """name==version of the distribution that provides the package's build-backend module."""
        parts = system.module.split(".")
        candidates = ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"]))
        # An in-tree backend (PEP 517 backend-path, searched first) is part of the package's
        # files, so its fingerprint covers it.
        if any((package.path / directory / relative).is_file() for directory in system.backend_path for relative in candidates):
            return f"in-tree:{system.module}"
        for relative in candidates:
            if relative in self._providers:
                return self._providers[relative]
        label = getattr(package, "label", package.directory)
        msg = f"{label}: no distribution in the build environment from {BUILD_LOCK} provides its build backend {system.backend!r}; add the one that does to [build-system] requires and run `invoke lock`"
        raise BackendError(msg)


@dataclass(frozen=True)
class BackendMetadata:
    """What a backend says a package is, for the model."""

    name: str
    version: str
    requires: tuple[str, ...]  # Requires-Dist, without optional groups (extras)
    scripts: dict[str, str]  # console scripts
    backend: str  # name==version of the backend that said it


_ENVIRONMENTS: dict[Path, BuildEnvironment] = {}
_CREATING = threading.Lock()


def environment(repository: Repository, lock: Path, needed_by: str, system: BuildSystem) -> BuildEnvironment:
    """The build environment of `lock`, for a package (`needed_by` names it) that `system`
    builds: StaleBuildLockError when the lock is missing or does not pin what it requires."""
    if not lock.is_file():
        msg = f"{BUILD_LOCK}: missing, but {needed_by} is built by {system.backend} ({', '.join(map(str, system.requires))}); run `invoke lock`"
        raise StaleBuildLockError(msg)
    try:
        pins = parse_pins(lock, BUILD_LOCK)
        check_markers(pins, repository.target.marker_environment(), repository.target.describe())
    except LockError as error:
        raise StaleBuildLockError(f"{error}; run `invoke lock`") from None
    require_locked(
        system.requires, pins, repository.target.marker_environment(), lambda r: f"{needed_by} needs {r} to build", StaleBuildLockError
    )
    directory = _cache_root() / _key(pins, repository)
    with _CREATING:
        if directory not in _ENVIRONMENTS:
            if not directory.is_dir():
                _create(directory, pins, repository)
            python = directory / "env" / "bin" / "python"
            site_packages = directory / "env" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
            _ENVIRONMENTS[directory] = BuildEnvironment(str(python), site_packages)
        return _ENVIRONMENTS[directory]


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wheelpipe" / "build-environments"


def _key(pins: dict[str, Pin], repository: Repository) -> str:
    """What an environment is made of: every pin with its hashes, the target whose wheels it
    holds and the interpreter it runs on. Notes and order in the lock do not count."""
    digest = hashlib.sha256(f"{environment_digest(pins)}\n".encode())
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    digest.update(f"{repository.target}\n{sys.version}\n{interpreter}\n".encode())
    return digest.hexdigest()[:32]


def _create(directory: Path, pins: dict[str, Pin], repository: Repository) -> None:
    """Install the build lock into `directory`, whole or not at all (built aside, then renamed)."""
    report.info(f"making the build environment from {BUILD_LOCK} ({len(pins)} pins, installed hash-checked)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        # Its errors name the build lock and the pin; every first-party package shares it.
        host_environment(work, pins, repository.indexes, repository.target)
        shutil.rmtree(work / "build-wheels")  # installed; the download cache keeps them
        try:
            work.rename(directory)
        except OSError:
            if not directory.is_dir():
                raise
            shutil.rmtree(work)  # another command made the same environment meanwhile
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def backend_of(repository: Repository, package: Package) -> str:
    """name==version of what builds the package now: the manifest's build_backend."""
    return environment(repository, repository.root / BUILD_LOCK, package.label, package.build_system).backend(package, package.build_system)


def python_for(repository: Repository, package: Package) -> str:
    """The interpreter of the build environment the package's backend runs in."""
    return environment(repository, repository.root / BUILD_LOCK, package.label, package.build_system).python


class _CaseSensitiveParser(configparser.ConfigParser):
    """entry_points.txt as written: console script names are case-sensitive."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def read_metadata(repository: Repository, location: PackageLocation, system: BuildSystem, lock: Path) -> BackendMetadata:
    """The name, version, dependencies and console scripts the package's backend gives, from
    the files git sees; cached by their fingerprint and the backend."""
    built_in = environment(repository, lock, location.directory, system)
    backend = built_in.backend(location, system)
    source = firstparty.WorkingTree(repository.root)
    key = hashlib.sha256(f"{firstparty.fingerprint(source, location)}\0{backend}\0{system.backend}".encode()).hexdigest()
    cache = repository.root / METADATA_CACHE / f"{key}.json"
    cached = _cached(cache)
    if cached is not None:
        return cached
    report.info(f"{location.directory}: reading its name, version and dependencies from its build backend ({backend})")
    with tempfile.TemporaryDirectory(prefix="wheelpipe-metadata-") as tmp:
        try:
            dist_info = firstparty.prepare_metadata(location, system, source, Path(tmp), built_in.python)
        except ToolError as error:
            raise explained(location, error) from None
        described = _parse(dist_info, backend, location.directory)
    write_atomic(cache, json.dumps({"name": described.name, "version": described.version, "requires": list(described.requires),
                                    "scripts": described.scripts, "backend": described.backend}, indent=2, sort_keys=True) + "\n")
    return described


def _cached(path: Path) -> BackendMetadata | None:
    try:
        data = json.loads(path.read_text())
        described = BackendMetadata(data["name"], data["version"], tuple(data["requires"]), dict(data["scripts"]), data["backend"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: asked again, never trusted half-read
    strings = [described.name, described.version, described.backend, *described.requires, *described.scripts, *described.scripts.values()]
    return described if all(isinstance(s, str) for s in strings) else None


def _parse(dist_info: Path, backend: str, directory: str) -> BackendMetadata:
    """A .dist-info directory's METADATA (Name, Version, Requires-Dist) and console scripts."""
    try:
        text = (dist_info / "METADATA").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        msg = f"{directory}: its build backend ({backend}) gave no readable METADATA ({error})"
        raise BackendError(msg) from None
    headers = email.parser.Parser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    # setuptools names a package it is told nothing about UNKNOWN, version 0.0.0.
    if not name or canonicalize_name(name) == "unknown" or not version:
        msg = f"{directory}: no static [project] name, version and dependencies, and its build backend ({backend}) gives none (Name {name!r}, Version {version!r}); declare them in [project] or in the backend's own configuration"
        raise RepositoryError(msg)
    requires = tuple(line for line in headers.get_all("Requires-Dist") or [] if not _optional(line))
    entry_points = _CaseSensitiveParser(interpolation=None)
    try:
        entry_points.read(dist_info / "entry_points.txt", encoding="utf-8")
    except configparser.Error as error:
        msg = f"{directory}: its build backend ({backend}) wrote an unreadable entry_points.txt ({str(error).splitlines()[0]})"
        raise BackendError(msg) from None
    scripts = dict(entry_points["console_scripts"]) if entry_points.has_section("console_scripts") else {}
    return BackendMetadata(name, version, requires, scripts, backend)


def _optional(line: str) -> bool:
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return False  # the model names it
    return bool(requirement.marker and _EXTRA_MARKER.search(str(requirement.marker)))


def explained(location: Package | PackageLocation, error: ToolError) -> PipelineError:
    """A backend's failure as the line of the package's pyproject.toml at fault, where the
    backend's output says which; else the failure as it is (its last error line)."""
    return _poetry_constraint_at_fault(location, error.output) or _poetry_schema_at_fault(location, error.output) or error


def _poetry_constraint_at_fault(location: Package | PackageLocation, output: str) -> RepositoryError | None:
    """poetry-core stops on a dependency's version constraint it cannot read (`libml = ""`)
    with a traceback whose last line gives the constraint but not the dependency: that is
    found in the [tool.poetry] dependency tables, with its line."""
    said = _POETRY_CONSTRAINT.findall(output)
    pyproject = location.path / "pyproject.toml"
    if not said or not pyproject.is_file():
        return None
    bad = said[-1].strip()
    try:
        text = pyproject.read_text(encoding="utf-8")
        poetry = tomllib.loads(text).get("tool", {}).get("poetry", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # the model names an unreadable pyproject.toml
    tables = [("tool.poetry.dependencies", poetry.get("dependencies")), ("tool.poetry.dev-dependencies", poetry.get("dev-dependencies"))]
    groups = poetry.get("group")
    if isinstance(groups, dict):
        tables += [(f"tool.poetry.group.{g}.dependencies", t.get("dependencies")) for g, t in groups.items() if isinstance(t, dict)]
    # The constraint as written, else one that holds the part poetry-core could not read.
    for matches in (lambda c: c.strip() == bad, lambda c: bool(bad) and bad in c):
        for table, dependencies in tables:
            for name, value in (dependencies or {}).items() if isinstance(dependencies, dict) else ():
                for constraint in _poetry_constraints(value):
                    if matches(constraint):
                        line = _key_line(text, table, name)
                        where = f"{location.directory}/pyproject.toml{f':{line}' if line else ''}"
                        found = "an empty string" if not constraint.strip() else repr(constraint)
                        if bad and bad != constraint.strip():
                            found += f", whose {bad!r} poetry-core cannot read"
                        return RepositoryError(f"{where}: [{table}] {name}: expected {POETRY_CONSTRAINT_EXPECTED}, found {found}")
    return None


def _poetry_schema_at_fault(location: Package | PackageLocation, output: str) -> RepositoryError | None:
    """poetry-core's schema check names the key (`tool.poetry.dependencies.libml must be
    valid exactly by one definition`) below a first line that says only that the
    configuration is invalid: the key's line, and what a dependency may be."""
    if "The Poetry configuration is invalid" not in output:
        return None
    said = _POETRY_SCHEMA.findall(output)
    if not said:
        return None
    key, what = said[0]
    table, _, name = key.rpartition(".")
    try:
        line = _key_line((location.path / "pyproject.toml").read_text(encoding="utf-8"), table, name)
    except (OSError, UnicodeDecodeError):
        line = 0
    where = f"{location.directory}/pyproject.toml{f':{line}' if line else ''}"
    expected = ""
    if table.endswith(("dependencies", "dev-dependencies")):
        expected = f"; expected {POETRY_CONSTRAINT_EXPECTED}, or a table with one of version, path, git or url"
    more = f" (and {len(said) - 1} more)" if len(said) > 1 else ""
    return RepositoryError(f"{where}: [{table}] {name}: poetry-core says it {what.strip()}{expected}{more}")


def _poetry_constraints(value: object) -> list[str]:
    """The version constraints of one poetry dependency: a string, a table's version, or
    each table's of a list of them (one per environment)."""
    if isinstance(value, str):
        return [value]
    tables = value if isinstance(value, list) else [value]
    return [t["version"] for t in tables if isinstance(t, dict) and isinstance(t.get("version"), str)]


def _key_line(text: str, table: str, key: str) -> int:
    """The line of `key = ...` under the `[table]` header, or 0 (a dotted key, an inline table)."""
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]\s*(#.*)?", stripped)
        if header:
            current = re.sub(r"\s*\.\s*", ".", header.group(1)).replace('"', "").replace("'", "")
        elif current == table and re.match(rf"""["']?{re.escape(key)}["']?\s*=""", stripped):
            return number
    return 0
