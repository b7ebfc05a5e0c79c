"""wheelpipe as a distribution other monorepos install: the wheel built from this repository,
installed into a fresh venv, runs another team's monorepo (tests/packages/foreign_monorepo)
that holds nothing of the pipeline but a one-line tasks.py, and its tasks work on the
repository invoke found that tasks.py in."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest
from invoke.context import Context
from monorepo import ROOT, commit_all, git, install_offline, invoke
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from wheelpipe import load_repository
from wheelpipe.lockfile import parse_pins
from wheelpipe.locks import ALWAYS_TOOLING
from wheelpipe.resources import SERVICE_DOCKERFILE_SOURCE
from wheelpipe.tasks import repository_root

FOREIGN_MONOREPO = ROOT / "tests" / "packages" / "foreign_monorepo"


def run(argv: Sequence[str | Path], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A command as a user of the installed pipeline runs it: nothing of this repository on
    PYTHONPATH, no virtual environment of ours active."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def pipeline_requirements() -> list[Requirement]:
    """[project] dependencies of the root pyproject.toml: what wheelpipe needs at run time."""
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


@pytest.fixture(scope="module")
def pipeline_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheelpipe wheel of this working tree, built with the tooling venv's backend."""
    outdir = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", outdir, ROOT])
    (wheel,) = outdir.glob("wheelpipe-*.whl")
    return wheel


@pytest.fixture(scope="module")
def tooling_venv(pipeline_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside this repository: the pipeline's dependencies hash-checked from the
    tooling lock, then the wheel alone, as the Quick start installs them. Installed by uv (the
    tooling's, into that venv's interpreter) rather than the venv's pip: the same files and
    hashes in a tenth of the time."""
    venv = tmp_path_factory.mktemp("tooling") / "venv"
    assert not venv.resolve().is_relative_to(ROOT)
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    uv: list[str | Path] = [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--python", python]
    run([*uv, "--require-hashes", "-r", ROOT / "requirements" / "dev.txt"])
    run([*uv, "--no-deps", pipeline_wheel])
    return venv


def with_tooling_lock(monorepo: Path, without: str | None = None) -> None:
    """Give a monorepo this repository's tooling lock as its own: dev.in and dev.txt (less one
    requirement and its pin), whose pins its `invoke lock` keeps."""
    requirements = monorepo / "requirements"
    requirements.mkdir()
    lines = ROOT.joinpath("requirements", "dev.in").read_text().splitlines(keepends=True)
    kept = [line for line in lines if without is None or line.strip() != without]
    assert without is None or len(kept) == len(lines) - 1
    requirements.joinpath("dev.in").write_text("".join(kept))
    pinned, skipping = [], False
    for line in ROOT.joinpath("requirements", "dev.txt").read_text().splitlines(keepends=True):
        if not line.startswith((" ", "#")):  # a pin's first line; its hashes and notes follow, indented
            skipping = without is not None and line.startswith(f"{without}==")
        if not skipping:
            pinned.append(line)
    requirements.joinpath("dev.txt").write_text("".join(pinned))
    assert without is None or without not in parse_pins(requirements / "dev.txt")


def installed_tooling_venv(pipeline_wheel: Path, venv: Path) -> Path:
    """A venv of this repository's tooling lock and the wheelpipe wheel (by uv, as tooling_venv)."""
    run([sys.executable, "-m", "venv", venv])
    uv: list[str | Path] = [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--python", venv / "bin" / "python"]
    run([*uv, "--require-hashes", "-r", ROOT / "requirements" / "dev.txt"])
    run([*uv, "--no-deps", pipeline_wheel])
    return venv


def test_every_requirement_of_wheelpipe_is_pinned_by_the_tooling_lock() -> None:
    # The Quick start installs wheelpipe with --no-deps: the lock must hold what it needs.
    pins = parse_pins(ROOT / "requirements" / "dev.txt", "requirements/dev.txt")
    missing = [str(r) for r in pipeline_requirements() if canonicalize_name(r.name) not in pins]
    assert not missing, f"requirements/dev.txt does not pin {missing}: add them to requirements/dev.in and run `invoke lock`"
    assert {canonicalize_name(r.name) for r in pipeline_requirements()} >= set(ALWAYS_TOOLING)


def test_tasks_work_on_the_repository_invoke_found_tasks_py_in(repo_copy: Path, tmp_path: Path) -> None:
    # The copy's tasks.py is the one-line import of the installed pipeline; its services are
    # not this repository's.
    assert repo_copy.joinpath("tasks.py").read_text().strip().endswith("from wheelpipe.tasks import ns  # noqa: F401")
    git(repo_copy, "rm", "-q", "-r", "services/user")
    from_inside = invoke(repo_copy / "services" / "order" / "src", "services")
    from_elsewhere = invoke(tmp_path, "--search-root", str(repo_copy), "services")
    assert from_inside.stdout == from_elsewhere.stdout == "order\npricing-audit\n"
    assert invoke(ROOT, "services").stdout.split() == list(load_repository(ROOT).services)


def test_a_context_made_outside_invoke_takes_the_nearest_root_above_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT / "src" / "wheelpipe")
    assert repository_root(Context()) == ROOT
    # No pyproject.toml declares a target above: the working directory, which
    # load_repository then reports as no monorepo root.
    monkeypatch.chdir(tmp_path)
    assert repository_root(Context()) == tmp_path.resolve()


@pytest.mark.slow
def test_a_foreign_monorepo_with_a_one_line_tasks_py_locks_builds_and_installs_offline(tooling_venv: Path, tmp_path: Path) -> None:
    monorepo = Path(shutil.copytree(FOREIGN_MONOREPO, tmp_path / "foreign"))
    assert not monorepo.resolve().is_relative_to(ROOT)
    assert monorepo.joinpath("tasks.py").read_text() == "from wheelpipe.tasks import ns  # noqa: F401\n"
    git(monorepo, "init", "-q", "-b", "main")
    commit_all(monorepo, "a monorepo that installs wheelpipe")
    invoke_there = tooling_venv / "bin" / "invoke"

    # The pipeline the venv runs is the installed wheel, not this repository.
    probe = run([tooling_venv / "bin" / "python", "-c", "import json, sys, wheelpipe.tasks; print(json.dumps([wheelpipe.tasks.__file__, sys.path]))"], cwd=monorepo)
    module, path = json.loads(probe.stdout)
    assert Path(module).is_relative_to(tooling_venv / "lib")
    assert not [entry for entry in path if entry and Path(entry).resolve().is_relative_to(ROOT)]

    # No requirements/ at all: --check names what lock would write, and writes nothing.
    stale = run([invoke_there, "lock", "--check"], cwd=monorepo, check=False)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "error: requirements/dev.in does not match its inputs (run `invoke lock`):\n  + requirements/dev.in (missing)\n" in stale.stderr
    assert not monorepo.joinpath("requirements").exists()

    locked = run([invoke_there, "lock"], cwd=monorepo)
    assert "wrote requirements/dev.in" in locked.stderr
    assert sorted(p.name for p in monorepo.joinpath("requirements").iterdir()) == ["api.in", "api.txt", "build.in", "build.txt", "dev.in", "dev.txt"]
    assert monorepo.joinpath("requirements", "api.in").read_text().endswith("\nsix>=1.16\n")
    # The monorepo's tooling lock can make its own tooling venv: it pins all wheelpipe needs.
    tooling_pins = parse_pins(monorepo / "requirements" / "dev.txt", "requirements/dev.txt")
    assert {canonicalize_name(r.name) for r in pipeline_requirements()} <= set(tooling_pins)
    # The written dev.in is the monorepo's own from now on: nothing is stale.
    run([invoke_there, "lock", "--check"], cwd=monorepo)

    built = run([invoke_there, "build-wheels"], cwd=monorepo)
    assert "building libs/util (foreign-util) 0.3.0" in built.stderr and "building apps/api (foreign-api) 0.2.0" in built.stderr
    installed = install_offline(monorepo, "api", tmp_path / "api-venv")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    six = parse_pins(monorepo / "requirements" / "api.txt", "requirements/api.txt")["six"]
    assert run([tmp_path / "api-venv" / "bin" / "foreign-api"]).stdout == f"foreign-api on six {six.version}\n"

    # The packages' tests import the wheels just built (the installed pipeline's pytest
    # plugin), and stop, naming the package, once its sources moved past them.
    python = tooling_venv / "bin" / "python"
    # As the README says: from its first lock on, the tooling venv is the monorepo's own lock
    # installed (invoke test stops, saying so, until it is).
    run([sys.executable, "-m", "uv", "pip", "install", "--no-config", "--python", python, "--require-hashes", "-r", monorepo / "requirements" / "dev.txt"])
    tested = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "libs"], cwd=monorepo)
    assert "2 passed" in tested.stdout
    util = monorepo / "libs" / "util" / "src" / "foreign_util" / "__init__.py"
    util.write_text(util.read_text() + "# changed after the wheel was built\n")
    stale = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "libs"], cwd=monorepo, check=False)
    assert stale.returncode == 4, stale.stdout + stale.stderr
    assert "ERROR: wheelhouse/foreign_util-0.3.0-py3-none-any.whl is older than libs/util, whose tests run against it; run `invoke build-wheels`" in stale.stderr
    assert "2 passed" in run([invoke_there, "test", "-k", "util"], cwd=monorepo).stdout

    generated = [*monorepo.joinpath("requirements").iterdir(), *monorepo.joinpath("wheelhouse", "install").iterdir(), monorepo / "wheelhouse" / "manifest.json"]
    assert not [p.name for p in generated if str(ROOT) in p.read_text()]


@pytest.mark.slow
def test_the_installed_pipeline_ships_the_service_dockerfile(tooling_venv: Path, tmp_path: Path) -> None:
    # A monorepo has no dockerfiles/ of ours: `invoke image` builds with the packaged recipe.
    probe = run([tooling_venv / "bin" / "python", "-c", "from wheelpipe.resources import service_dockerfile; print(service_dockerfile())"], cwd=tmp_path, check=False)
    assert probe.returncode == 0, probe.stderr
    packaged = Path(probe.stdout.strip())
    assert packaged.is_relative_to(tooling_venv / "lib")
    assert packaged.read_bytes() == (ROOT / SERVICE_DOCKERFILE_SOURCE).read_bytes()


@pytest.mark.slow
def test_invoke_test_in_a_tooling_venv_without_pytest_xdist_is_one_line_until_jobs_1(pipeline_wheel: Path, tmp_path: Path) -> None:
    # A team's tooling lock from before invoke test ran workers: pytest-xdist is not there.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    uv: list[str | Path] = [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--python", venv / "bin" / "python"]
    run([*uv, "--require-hashes", "-r", ROOT / "requirements" / "dev.txt"])
    run([*uv, "--no-deps", pipeline_wheel])
    run([sys.executable, "-m", "uv", "pip", "uninstall", "--no-config", "--python", venv / "bin" / "python", "pytest-xdist"])
    monorepo = Path(shutil.copytree(FOREIGN_MONOREPO, tmp_path / "foreign"))
    # That lock is the monorepo's: its dev.in from before (no pytest-xdist) and its pins (this
    # repository's), which its first `invoke lock` keeps, so the venv matches it.
    with_tooling_lock(monorepo, without="pytest-xdist")
    git(monorepo, "init", "-q", "-b", "main")
    commit_all(monorepo, "a monorepo that installs wheelpipe")

    refused = run([venv / "bin" / "invoke", "test"], cwd=monorepo, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: pytest-xdist is not installed in the tooling venv ({venv}), and invoke test runs its workers; add it to requirements/dev.in, "
        "run `invoke lock` and install requirements/dev.txt, or run `invoke test --jobs 1`"
    ], refused.stderr
    assert not (monorepo / "wheelhouse").exists()
    locked = run([venv / "bin" / "invoke", "lock"], cwd=monorepo)
    assert "pytest-xdist" not in (monorepo / "requirements" / "dev.txt").read_text()
    assert "warning:" not in locked.stderr  # the venv holds every pin of the lock
    assert "2 passed" in run([venv / "bin" / "invoke", "test", "--jobs", "1", "-k", "util"], cwd=monorepo).stdout


@pytest.mark.slow
def test_a_tooling_venv_that_no_longer_matches_the_tooling_lock_is_one_line_naming_the_command_that_installs_it(pipeline_wheel: Path, tmp_path: Path) -> None:
    venv = installed_tooling_venv(pipeline_wheel, tmp_path / "venv")
    python = venv / "bin" / "python"
    monorepo = Path(shutil.copytree(FOREIGN_MONOREPO, tmp_path / "foreign"))
    with_tooling_lock(monorepo)
    git(monorepo, "init", "-q", "-b", "main")
    commit_all(monorepo, "a monorepo that installs wheelpipe")
    locked = run([venv / "bin" / "invoke", "lock"], cwd=monorepo)
    assert "warning:" not in locked.stderr, locked.stderr
    pins = parse_pins(monorepo / "requirements" / "dev.txt")
    assert pins["six"].version == "1.17.0" and pins["iniconfig"].version != "2.0.0"

    # The venv drifts from the lock: the package the tests import is gone (what `invoke lock`
    # adding a service's dependency does), another is at a version the lock does not pin.
    uv = [sys.executable, "-m", "uv", "pip", "--no-config"]
    run([*uv, "uninstall", "--python", python, "six"])
    run([*uv, "install", "--python", python, "iniconfig==2.0.0"])
    command = f"{python} -m pip install --require-hashes -r {monorepo / 'requirements' / 'dev.txt'}"
    refused = run([venv / "bin" / "invoke", "test", "--jobs", "1", "-k", "util"], cwd=monorepo, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr and "ModuleNotFoundError" not in refused.stdout, refused.stdout + refused.stderr
    assert [line for line in refused.stderr.splitlines() if line.startswith("error:")] == [
        f"error: the tooling venv ({venv}) does not match requirements/dev.txt: iniconfig 2.0.0 (pinned {pins['iniconfig'].version}), "
        f"six==1.17.0 missing; install it with `{command}`"
    ], refused.stderr
    assert not (monorepo / "wheelhouse").exists()  # stopped before building anything

    # `invoke lock` says so too, right when it is run, and goes on.
    relocked = run([venv / "bin" / "invoke", "lock"], cwd=monorepo)
    assert [line for line in relocked.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: the tooling venv no longer matches requirements/dev.txt: iniconfig 2.0.0 (pinned {pins['iniconfig'].version}), "
        f"six==1.17.0 missing; before `invoke test`, run `{command}`"
    ]

    # The command it names, word for word, is all it takes.
    run(shlex.split(command), cwd=tmp_path)
    assert "2 passed" in run([venv / "bin" / "invoke", "test", "--jobs", "1", "-k", "util"], cwd=monorepo).stdout
