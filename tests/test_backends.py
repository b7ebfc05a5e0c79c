"""Any PEP 517 backend: first-party packages built by poetry-core, setuptools (setup.cfg, and
setup.py by PEP 517's legacy rule) and flit_core beside hatchling. Their backends are locked
with hashes in requirements/build.txt and run from it; metadata that is not static in
[project] comes from the backend; the manifest names the backend that built each wheel.

One copy of the monorepo, with the fixture packages of tests/packages/backend_* under
shared/ and services/user depending on them, is locked and built once for the module;
each test works on a copy of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from monorepo import commit_all, copy_repository, git, install_offline, invoke, one_error

from wheelpipe.lockfile import parse_pins
from wheelpipe.workspace import load_repository

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

PACKAGES = Path(__file__).parent / "packages"
# fixture directory -> (distribution, version, the distribution providing its backend)
FIXTURES = {
    "backend_poetry": ("wheelpipe-fixture-poetry", "0.3.0", "poetry-core"),
    "backend_setuptools": ("wheelpipe-fixture-setuptools", "0.4.0", "setuptools"),
    "backend_setup_py": ("wheelpipe-fixture-setup-py", "0.5.0", "setuptools"),
    "backend_flit": ("wheelpipe-fixture-flit", "0.6.0", "flit-core"),
}
# What installing each needs, as its backend writes Requires-Dist (no dev group, no extra).
REQUIRES = {
    "wheelpipe-fixture-poetry": ["discount-calculator", "itsdangerous (>=2.1,<3.0)"],
    "wheelpipe-fixture-setuptools": ["click>=8.0"],
    "wheelpipe-fixture-setup-py": ["markupsafe>=2.1", "wheelpipe-fixture-setuptools"],
    "wheelpipe-fixture-flit": ["blinker>=1.6"],
}
SETUPTOOLS_BUILT = {"wheelpipe-fixture-setuptools", "wheelpipe-fixture-setup-py"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The monorepo with the four fixture packages in shared/, used by user; locked and built."""
    repository = copy_repository(tmp_path_factory.mktemp("backends") / "monorepo")
    for directory in FIXTURES:
        shutil.copytree(PACKAGES / directory, repository / "shared" / directory)
    pyproject = repository / "services/user/pyproject.toml"
    names = "".join(f'    "{name}",\n' for name, _, _ in FIXTURES.values() if name != "wheelpipe-fixture-setuptools")
    text = pyproject.read_text()
    assert text.count('    "flask>=3.0",\n') == 1
    pyproject.write_text(text.replace('    "flask>=3.0",\n', f'    "flask>=3.0",\n{names}'))
    commit_all(repository, "user uses packages of four backends")
    invoke(repository, "lock")
    commit_all(repository, "lock")
    invoke(repository, "build-wheels")
    return repository


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "monorepo", symlinks=True))


def manifest(repository: Path) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in json.loads((repository / "wheelhouse/manifest.json").read_text())["wheels"]}


def snapshot(repository: Path) -> tuple[dict[str, str], str]:
    """Every file git sees, by sha256, and where the wheelhouse points: nothing else may change."""
    listed = git(repository, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    files = {name: hashlib.sha256((repository / name).read_bytes()).hexdigest() for name in listed.split("\0") if name and (repository / name).is_file()}
    return files, os.readlink(repository / "wheelhouse")


def test_lock_locks_every_first_party_backend_with_hashes_and_checks_clean(built: Path) -> None:
    build_in = (built / "requirements/build.in").read_text().splitlines()
    for line in ("poetry-core>=2.0", "setuptools>=68", "setuptools>=40.8.0", "flit_core<4,>=3.9", "hatchling>=1.26"):
        assert line in build_in, build_in
    # The legacy rule: no [build-system] means setuptools' __legacy__ backend.
    assert "#   shared/backend_setup_py (setuptools.build_meta:__legacy__): setuptools>=40.8.0" in build_in
    pins = parse_pins(built / "requirements/build.txt")
    assert {"poetry-core", "setuptools", "flit-core", "hatchling"} <= set(pins)
    assert all(len(pin.hashes) >= 1 for pin in pins.values())
    checked = invoke(built, "lock", "--check")
    assert "every lock matches its inputs" in checked.stderr


def test_the_model_reads_what_only_the_backend_can_say(built: Path) -> None:
    repository = load_repository(built)
    poetry = repository.packages["wheelpipe-fixture-poetry"]
    assert poetry.metadata_from == "backend" and poetry.version == "0.3.0"
    assert [str(r) for r in poetry.requirements] == ["discount-calculator", "itsdangerous<3.0,>=2.1"]
    assert poetry.internal == ("discount-calculator",)
    assert repository.packages["wheelpipe-fixture-setup-py"].internal == ("wheelpipe-fixture-setuptools",)
    assert repository.packages["wheelpipe-fixture-flit"].metadata_from == "pyproject.toml"
    # Third-party requirements of every backend reach the service's lock input; the poetry dev
    # group and the setuptools extra do not.
    user_in = (built / "requirements/user.in").read_text().splitlines()
    assert {"itsdangerous<3.0,>=2.1", "click>=8.0", "markupsafe>=2.1", "blinker>=1.6"} <= set(user_in)
    assert not [line for line in user_in if line.startswith(("pytest", "sphinx"))]


def test_each_wheel_is_built_by_its_own_backend_from_the_build_lock_and_installs_offline(built: Path, tmp_path: Path) -> None:
    wheels = manifest(built)
    build_lock = parse_pins(built / "requirements/build.txt")
    for name, version, backend in FIXTURES.values():
        entry = wheels[name]
        assert entry["version"] == version and entry["services"] == ["user"]
        assert entry["origin"]["build_backend"] == f"{backend}=={build_lock[backend].version}"
        with zipfile.ZipFile(built / "wheelhouse" / entry["file"]) as wheel:
            (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
            headers = wheel.read(metadata).decode()
        assert f"\nName: {name}\n" in headers and f"\nVersion: {version}\n" in headers
        requires = [line.removeprefix("Requires-Dist: ") for line in headers.splitlines() if line.startswith("Requires-Dist: ") and "extra ==" not in line]
        assert requires == REQUIRES[name]
    assert wheels["order-manager"]["origin"]["build_backend"] == f"hatchling=={build_lock['hatchling'].version}"

    installed = install_offline(built, "user", tmp_path / "venv")
    assert installed.returncode == 0, installed.stderr
    imported = subprocess.run(
        [tmp_path / "venv/bin/python", "-c", "import wheelpipe_fixture_poetry as p, wheelpipe_fixture_setup_py as s, wheelpipe_fixture_flit as f; print(p.BACKEND, s.BACKEND, f.BACKEND)"],
        capture_output=True, text=True, check=True,
    )
    assert imported.stdout.split() == ["poetry-core", "setuptools", "(legacy)", "flit_core"]


def test_a_second_build_reuses_every_wheel(repo: Path) -> None:
    before = snapshot(repo)
    result = invoke(repo, "build-wheels")
    assert "wheelhouse is up to date: nothing to build, nothing to download" in result.stderr
    assert snapshot(repo) == before


def test_a_new_backend_pin_rebuilds_exactly_the_packages_that_backend_builds(repo: Path) -> None:
    old = manifest(repo)
    current = parse_pins(repo / "requirements/build.txt")["setuptools"].version
    other = "80.9.0" if current != "80.9.0" else "80.8.0"
    invoke(repo, "lock", "--upgrade-package", f"setuptools=={other}")
    assert parse_pins(repo / "requirements/build.txt")["setuptools"].version == other

    result = invoke(repo, "build-wheels")
    rebuilt = set(re.findall(r"building \S+ \((\S+)\)", result.stderr))
    assert rebuilt == SETUPTOOLS_BUILT, result.stderr
    new = manifest(repo)
    for name in SETUPTOOLS_BUILT:
        assert new[name]["origin"]["build_backend"] == f"setuptools=={other}"
    assert {n: e["sha256"] for n, e in new.items() if n not in SETUPTOOLS_BUILT} == {n: e["sha256"] for n, e in old.items() if n not in SETUPTOOLS_BUILT}
    invoke(repo, "lock", "--check")
    assert "nothing to build" in invoke(repo, "build-wheels").stderr


def test_tool_output_left_in_a_package_neither_enters_its_wheel_nor_changes_its_fingerprint(repo: Path) -> None:
    setuptools_package = repo / "shared/backend_setuptools"
    strays = [
        setuptools_package / "build/lib/wheelpipe_fixture_setuptools/deleted_module.py",
        setuptools_package / "src/wheelpipe_fixture_setuptools.egg-info/PKG-INFO",
        repo / "shared/backend_flit/.pdm-build/wheelpipe_fixture_flit/deleted_module.py",
        repo / "shared/backend_poetry/dist/wheelpipe_fixture_poetry-0.0.1-py3-none-any.whl",
    ]
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_text("STALE = True\n")
    # No .gitignore rule covers .pdm-build/: only the staging rule keeps it out.
    assert "shared/backend_flit/.pdm-build/" in git(repo, "status", "--porcelain", "--untracked-files=normal")
    before = manifest(repo)

    assert "nothing to build" in invoke(repo, "build-wheels").stderr
    invoke(repo, "build-wheels", "--clean")
    after = manifest(repo)
    for name, _, _ in FIXTURES.values():
        assert after[name]["sha256"] == before[name]["sha256"], name
        assert after[name]["origin"]["source_sha256"] == before[name]["origin"]["source_sha256"], name
        with zipfile.ZipFile(repo / "wheelhouse" / after[name]["file"]) as wheel:
            assert not [n for n in wheel.namelist() if "deleted_module" in n or ".egg-info/" in n or n.endswith(".whl")], name


def test_a_tampered_hash_in_the_build_lock_stops_build_wheels_naming_the_lock_and_the_pin(repo: Path) -> None:
    lock = repo / "requirements/build.txt"
    pin = parse_pins(lock)["poetry-core"]
    forged = "0" * 64
    text = lock.read_text()
    for digest in pin.hashes:
        text = text.replace(digest, forged)
    lock.write_text(text)
    before = snapshot(repo)

    line = one_error(invoke(repo, "build-wheels", check=False))

    assert line.startswith(f"error: requirements/build.txt: poetry-core=={pin.version}: the index's poetry_core-{pin.version}-"), line
    assert line.endswith(f"which is not locked (locked: sha256:{forged}); run `invoke lock --check`"), line
    assert snapshot(repo) == before


def test_a_missing_build_lock_is_one_line_until_invoke_lock_writes_it(repo: Path) -> None:
    lock = repo / "requirements/build.txt"
    backends = set(parse_pins(lock))
    lock.unlink()
    before = snapshot(repo)
    for command in ("build-wheels", "services"):
        line = one_error(invoke(repo, command, check=False))
        assert line == "error: requirements/build.txt: missing, but shared/backend_poetry is built by poetry.core.masonry.api (poetry-core>=2.0); run `invoke lock`"
    assert snapshot(repo) == before

    stale = invoke(repo, "lock", "--check", check=False)
    assert stale.returncode == 1 and "+ requirements/build.txt (missing)" in stale.stderr, stale.stderr
    invoke(repo, "lock")
    assert set(parse_pins(lock)) == backends
    invoke(repo, "lock", "--check")


@pytest.mark.parametrize(
    ("pyproject", "expected"),
    [
        (
            '[build-system]\nrequires = ["hatchling>=1.26"]\nbuild-backend = "hatchling.build"\n',
            r"error: shared/nameless: asking its build backend for its name, version and dependencies \(no static \[project\] gives them\) failed \(exit 1\): .*project.*",
        ),
        (
            '[build-system]\nrequires = ["flit_core>=3.9,<4"]\nbuild-backend = "flit_core.buildapi"\n\n[project]\nname = "nameless"\ndescription = "No version anywhere."\ndynamic = ["version"]\n',
            r"error: shared/nameless: asking its build backend for its name, version and dependencies \(no static \[project\] gives them\) failed \(exit 1\): .*version.*",
        ),
        (
            '[build-system]\nrequires = ["poetry-core>=99"]\nbuild-backend = "poetry.core.masonry.api"\n',
            r"error: requirements/build\.txt: shared/nameless needs poetry-core>=99 to build, but the build lock pins poetry-core==[\d.]+; run `invoke lock`",
        ),
        (
            '[build-system]\nrequires = ["hatchling>=1.26"]\nbuild-backend = "flit_core_missing.buildapi"\n',
            r"error: shared/nameless: no distribution in the build environment from requirements/build\.txt provides its build backend 'flit_core_missing\.buildapi'; add the one that does to \[build-system\] requires and run `invoke lock`",
        ),
    ],
    ids=["backend-without-metadata", "dynamic-version-from-nowhere", "backend-not-locked", "backend-not-provided"],
)
def test_a_package_no_backend_can_describe_is_one_line(repo: Path, pyproject: str, expected: str) -> None:
    package = repo / "shared/nameless"
    (package / "src/nameless").mkdir(parents=True)
    (package / "src/nameless/__init__.py").write_text("")
    (package / "pyproject.toml").write_text(pyproject)
    before = snapshot(repo)
    line = one_error(invoke(repo, "services", check=False))
    assert re.fullmatch(expected, line), line
    assert snapshot(repo) == before


POETRY_SERVICE = """\
[build-system]
requires = ["poetry-core>=2.0"]
build-backend = "poetry.core.masonry.api"

[tool.poetry]
name = "poems"
version = "1.2.0"
description = "A service described by [tool.poetry]."
authors = ["wheelpipe tests <tests@example.invalid>"]
packages = [{ include = "poems", from = "src" }]

[tool.poetry.dependencies]
python = ">=3.11"
service-runtime = "*"

[tool.poetry.scripts]
poems = "poems.server:main"

[tool.wheelpipe.service]
command = "poems"
port-env = "POEMS_PORT"
default-port = 8009
"""


def test_a_service_described_by_its_backend_serves_a_console_script_its_backend_declares(repo: Path) -> None:
    service = repo / "services/poems"
    (service / "src/poems").mkdir(parents=True)
    (service / "src/poems/__init__.py").write_text('"""Poems."""\n')
    (service / "pyproject.toml").write_text(POETRY_SERVICE)
    assert invoke(repo, "services").stdout.split() == ["order", "poems", "pricing-audit", "user"]
    poems = load_repository(repo).service("poems")
    assert poems.service is not None  # POETRY_SERVICE declares the service table
    assert (poems.name, poems.version, poems.internal, poems.service.command) == ("poems", "1.2.0", ("service-runtime",), ("poems",))

    # Another console script of its venv (a dependency's) is the image build's to check; a path never is one.
    (service / "pyproject.toml").write_text(POETRY_SERVICE.replace('command = "poems"', 'command = "gunicorn poems.server:app"'))
    settings = load_repository(repo).service("poems").service
    assert settings is not None
    assert settings.command == ("gunicorn", "poems.server:app")
    (service / "pyproject.toml").write_text(POETRY_SERVICE.replace('command = "poems"', 'command = "./poem-server"'))
    line = one_error(invoke(repo, "services", check=False))
    assert line.startswith("error: services/poems/pyproject.toml: [tool.wheelpipe.service] command must start with the name of a console script in the service's venv (not a path; no shell), e.g. \"poems\""), line


POETRY_FIXTURE_DEPENDENCY = 'itsdangerous = "^2.1"\n'


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ('libml = ""', 'expected a version constraint ("*" for any version, "^1.2", ">=1.2,<2"), found an empty string'),
        ('"libml" = "  "', 'expected a version constraint ("*" for any version, "^1.2", ">=1.2,<2"), found an empty string'),
        ('libml = "~=abc"', "expected a version constraint (\"*\" for any version, \"^1.2\", \">=1.2,<2\"), found '~=abc'"),
        (
            'libml = { version = ">=1,foo", optional = false }',
            "expected a version constraint (\"*\" for any version, \"^1.2\", \">=1.2,<2\"), found '>=1,foo', whose 'foo' poetry-core cannot read",
        ),
        (
            "libml = 3",
            'poetry-core says it must be valid exactly by one definition (0 matches found); expected a version constraint '
            '("*" for any version, "^1.2", ">=1.2,<2"), or a table with one of version, path, git or url',
        ),
    ],
    ids=["empty", "blank", "unreadable", "unreadable-in-table", "not-a-constraint"],
)
def test_a_poetry_dependency_poetry_core_cannot_read_is_one_line_naming_file_line_and_dependency(repo: Path, declared: str, expected: str) -> None:
    pyproject = repo / "shared/backend_poetry/pyproject.toml"
    text = pyproject.read_text()
    assert text.count(POETRY_FIXTURE_DEPENDENCY) == 1
    pyproject.write_text(text.replace(POETRY_FIXTURE_DEPENDENCY, f"{POETRY_FIXTURE_DEPENDENCY}{declared}\n"))
    line = text[: text.index(POETRY_FIXTURE_DEPENDENCY)].count("\n") + 2
    before = snapshot(repo)
    result = invoke(repo, "services", check=False)
    assert one_error(result) == f"error: shared/backend_poetry/pyproject.toml:{line}: [tool.poetry.dependencies] libml: {expected}"
    assert snapshot(repo) == before


def test_a_poetry_constraint_that_breaks_the_wheel_build_is_named_the_same_way(repo: Path) -> None:
    # poetry-core 2 with a static [project]: the model needs no backend, the wheel's build reads
    # [tool.poetry.dependencies] and stops there.
    pyproject = repo / "shared/backend_poetry/pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["poetry-core>=2.0"]\nbuild-backend = "poetry.core.masonry.api"\n\n'
        '[project]\nname = "wheelpipe-fixture-poetry"\nversion = "0.3.1"\nrequires-python = ">=3.11"\n'
        'dependencies = ["discount-calculator", "itsdangerous>=2.1,<3.0"]\n\n'
        '[tool.poetry]\npackages = [{ include = "wheelpipe_fixture_poetry", from = "src" }]\n\n'
        '[tool.poetry.dependencies]\nitsdangerous = ""\n\n'
        "[tool.wheelpipe.sources]\ndiscount-calculator = { workspace = true }\n"
    )
    before = os.readlink(repo / "wheelhouse")
    result = invoke(repo, "build-wheels", check=False)
    assert one_error(result) == (
        "error: shared/backend_poetry/pyproject.toml:15: [tool.poetry.dependencies] itsdangerous: "
        'expected a version constraint ("*" for any version, "^1.2", ">=1.2,<2"), found an empty string'
    )
    assert os.readlink(repo / "wheelhouse") == before


def test_a_teams_poetry_monorepo_with_an_empty_constraint_stops_its_first_lock_on_that_line(tmp_path: Path) -> None:
    # Another team's shape (tests/packages/migrate_poetry), as it arrives: no requirements/ yet.
    repository = copy_repository(tmp_path / "shop", PACKAGES / "migrate_poetry")
    pyproject = repository / "services/order/pyproject.toml"
    text = pyproject.read_text()
    assert text.count('flask = "^3.0"\n') == 1
    pyproject.write_text(text.replace('flask = "^3.0"\n', 'flask = "^3.0"\nlibml = ""\n'))
    commit_all(repository, "a dependency with no constraint, as it was found")
    result = invoke(repository, "lock", check=False)
    line = text[: text.index('flask = "^3.0"\n')].count("\n") + 2
    assert one_error(result) == (
        f"error: services/order/pyproject.toml:{line}: [tool.poetry.dependencies] libml: "
        'expected a version constraint ("*" for any version, "^1.2", ">=1.2,<2"), found an empty string'
    )
    assert not (repository / "requirements" / "order.txt").exists()
