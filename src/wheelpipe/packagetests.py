"""The first-party packages' tests run against their built wheels, as those ship.

A pytest plugin, registered as wheelpipe's `pytest11` entry point, so every pytest run in a
venv that has wheelpipe loads it. In a repository whose root pyproject.toml declares
[tool.wheelpipe.target] it installs the current wheelhouse's first-party wheels into a
directory of their own (once per set of wheels) and puts that first on sys.path: a package's
tests import what was built, a compiled extension included, never its raw src/ directory.
A wheelhouse that is missing, or older than a package's sources, stops the run before any of
that package's tests is collected, saying to run `invoke build-wheels`; the pipeline's own
tests need no wheelhouse and never stop for it.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import firstparty
from .console import Reporter
from .errors import PipelineError
from .model import load_repository, nearest_root
from .tools import run
from .wheelhouse import STORE, WHEELHOUSE, BuiltOrigin, open_wheelhouse

# Under the wheelhouse store: one installed directory per set of first-party wheels.
SITES = "test-sites"
_REBUILD = "run `invoke build-wheels` (`invoke test` does)"


@dataclass(frozen=True)
class Site:
    """Where the first-party wheels are installed for the tests, and what keeps a package's
    tests from running (by the package's directory)."""

    path: Path | None
    problems: dict[Path, str] = field(default_factory=dict)


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
        _install(wheels, site)
    return Site(site, problems)


def _install(wheels: list[Path], site: Path) -> None:
    """The wheels installed side by side into `site`, from the files alone, all or nothing."""
    site.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="partial-", dir=site.parent) as tmp:
        staged = Path(tmp) / "site"
        # uv, the tooling's: from the wheel files alone (no index, no cache, no configuration).
        run(
            [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--offline", "--no-index", "--no-cache", "--no-deps",
             "--python", sys.executable, "--target", staged, *wheels],
            reporter=Reporter(stream=io.StringIO()),
            what="installing the first-party wheels for their tests",
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
