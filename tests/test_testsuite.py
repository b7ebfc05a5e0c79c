"""`invoke test` runs the suite in pytest-xdist workers (--jobs): each test file whole in one
worker, in its order, and --jobs 1 in a single process. A repository without tests is said
to have none, not failed; a -k that matches none of its tests is an error.

Probe tests placed in a copy of the fixture monorepo record which worker ran them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from monorepo import ROOT, commit_all, copy_repository, error_lines, invoke

from wheelpipe import testsuite

# Each probe records its file, its name and its worker ("" in a run without workers).
PROBE = """import json, os, pathlib

def _record(name):
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(json.dumps([pathlib.Path(__file__).name, name, os.environ.get("PYTEST_XDIST_WORKER", "")]) + "\\n")
""" + "".join(f"\ndef test_workerprobe_{n}():\n    _record({n})\n" for n in range(4))

# Four files of four tests: sent one test at a time (--dist load), a file's tests would go to
# both workers.
PROBES = ["test_workerprobe_a.py", "test_workerprobe_b.py", "test_workerprobe_c.py", "test_workerprobe_d.py"]


def with_probes(repository: Path) -> None:
    tests = repository / "tests"
    tests.mkdir(exist_ok=True)
    for name in PROBES:
        tests.joinpath(name).write_text(PROBE)


def probe_env(log: Path) -> dict[str, str]:
    """Where the probes write, with no worker of ours in the environment: this suite may itself
    run in a worker, whose PYTEST_XDIST_WORKER a run without workers would pass on."""
    return {"PROBE_LOG": str(log), "PYTEST_XDIST_WORKER": ""}


def records(log: Path) -> list[tuple[str, int, str]]:
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_each_test_file_runs_whole_in_one_worker_in_its_order(built_copy: Path, tmp_path: Path) -> None:
    with_probes(built_copy)
    log = tmp_path / "probes.jsonl"
    result = invoke(built_copy, "test", "--jobs", "2", "-k", "workerprobe", env=probe_env(log))
    assert "16 passed" in result.stdout, result.stdout
    ran = records(log)
    assert len(ran) == 16 and {worker for _, _, worker in ran} == {"gw0", "gw1"}
    worker_of: dict[str, set[str]] = {}
    for file, _, worker in ran:
        worker_of.setdefault(file, set()).add(worker)
    assert all(len(workers) == 1 for workers in worker_of.values()), worker_of
    # In its file's order: a worker runs a file's tests one after another.
    for file in PROBES:
        assert [n for f, n, _ in ran if f == file] == [0, 1, 2, 3]


@pytest.mark.slow
def test_jobs_1_runs_every_test_in_one_process_without_workers(built_copy: Path, tmp_path: Path) -> None:
    with_probes(built_copy)
    log = tmp_path / "probes.jsonl"
    result = invoke(built_copy, "test", "--jobs", "1", "-k", "workerprobe", env=probe_env(log))
    assert "16 passed" in result.stdout and "workers" not in result.stdout, result.stdout
    assert {worker for _, _, worker in records(log)} == {""}


@pytest.mark.parametrize("jobs", ["0", "many", "-2", "1.5", ""])
def test_a_jobs_value_that_is_not_a_count_is_one_line_before_anything_is_built(repo_copy: Path, tmp_path: Path, jobs: str) -> None:
    with_probes(repo_copy)
    log = tmp_path / "probes.jsonl"
    result = invoke(repo_copy, "test", "--jobs", jobs, env=probe_env(log), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_lines(result.stderr) == [
        f'error: invoke test --jobs: expected a number of workers (1 runs the tests in one process) or "auto" (one per CPU, and one more), found "{jobs}"'
    ]
    assert not log.exists() and not (repo_copy / "wheelhouse").exists()


def test_the_default_is_one_worker_per_cpu_and_one_more_unless_xdist_s_own_variable_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    command = testsuite.suite_command()
    assert command[command.index("--numprocesses") + 1] == str(cpus + 1)
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "5")
    command = testsuite.suite_command()
    assert command[command.index("--numprocesses") + 1] == "5"
    assert "--numprocesses" not in testsuite.suite_command(jobs="1")


NO_TESTS = "no tests: pytest collected none in this repository; nothing to run"


@pytest.fixture(scope="module")
def untested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture monorepo as a team's first afternoon finds theirs: not one test, built."""
    repository = copy_repository(tmp_path_factory.mktemp("untested") / "monorepo")
    for tests in [*repository.glob("services/*/tests"), *repository.glob("shared/*/tests")]:
        subprocess.run(["git", "rm", "-rq", str(tests)], cwd=repository, check=True)
    commit_all(repository, "no tests")
    invoke(repository, "build-wheels")
    return repository


@pytest.mark.slow
def test_a_repository_without_tests_says_so_in_one_line_and_exits_0(untested: Path) -> None:
    # In workers (the default) and in one process: pytest's exit 5 either way.
    for args in ([], ["--jobs", "1"]):
        result = invoke(untested, "test", *args, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1] == NO_TESTS, result.stdout
        assert "error" not in result.stderr


@pytest.mark.slow
def test_a_k_that_matches_no_test_is_an_error_and_a_fast_tier_with_none_is_said(untested: Path, tmp_path: Path) -> None:
    repository = Path(shutil.copytree(untested, tmp_path / "monorepo", symlinks=True))
    pyproject = repository / "pyproject.toml"
    markers = '\nmarkers = ["slow: a slow test", "docker: needs Docker", "network: needs an index"]\n'
    pyproject.write_text(pyproject.read_text().replace('filterwarnings = ["error"]\n', 'filterwarnings = ["error"]' + markers))
    tests = repository / "shared" / "discount_calculator" / "tests"
    tests.mkdir()
    tests.joinpath("test_slow.py").write_text("import pytest\n\n\n@pytest.mark.slow\ndef test_slow():\n    pass\n")

    typo = invoke(repository, "test", "--jobs", "1", "-k", "test_slwo", check=False)
    assert typo.returncode == 1 and "Traceback" not in typo.stderr, typo.stderr
    assert error_lines(typo.stderr) == ["error: invoke test -k 'test_slwo': no test matches; the repository has 1 test"]

    fast = invoke(repository, "test", "--jobs", "1", "--fast", check=False)
    assert fast.returncode == 0, fast.stdout + fast.stderr
    assert fast.stdout.splitlines()[-1] == (
        "no test in the fast tier (-m 'not docker and not network and not slow'): the repository has 1 test, "
        "each needing Docker, a package index or a whole build; nothing to run"
    )
    assert "1 passed" in invoke(repository, "test", "--jobs", "1", "-k", "test_slow").stdout


def test_a_test_that_hangs_fails_with_its_name_after_the_configured_timeout(tmp_path: Path) -> None:
    # This repository's own setting, under the key pytest-timeout reads, in a project of one
    # hanging test (shortened: the suite's generous value would keep this test for minutes).
    configured = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["timeout"]
    assert isinstance(configured, int) and 60 <= configured <= 900, configured
    tmp_path.joinpath("pyproject.toml").write_text("[tool.pytest.ini_options]\ntimeout = 2\n")
    tmp_path.joinpath("test_hang.py").write_text("import time\n\n\ndef test_hangs():\n    time.sleep(120)\n")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist"], cwd=tmp_path, capture_output=True, text=True, timeout=100, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED test_hang.py::test_hangs - Failed: Timeout (>2.0s) from pytest-timeout." in result.stdout, result.stdout
    assert time.monotonic() - started < 60
