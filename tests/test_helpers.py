"""The tests' own helpers: `invoke()` run in the test process gives exactly what a
`python -m invoke` process gives, and leaves nothing of the call behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from monorepo import ROOT, copy_repository, invoke

# Successes, a task's one-line error, invoke's own errors (an unknown task, a bad flag), what
# a task prints on stdout, a tool's failure, and output with a non-ASCII character.
CALLS = {
    "a task's output": ("services", "--json"),
    "a task's one-line error": ("lock", "--service", "nope"),
    "a bad flag value": ("test", "--jobs", "many"),
    "invoke's own listing": ("--list",),
    "an unknown task": ("no-such-task",),
    "an unknown flag": ("services", "--no-such-flag"),
    "a ref git does not know": ("affected", "--since", "no-such-ref-é"),
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repository(tmp_path_factory.mktemp("helpers") / "monorepo")


@pytest.mark.parametrize("call", list(CALLS))
def test_invoke_in_this_process_gives_what_a_process_gives(repository: Path, call: str) -> None:
    args = CALLS[call]
    fresh = invoke(repository, *args, check=False, process=True)
    here = invoke(repository, *args, check=False)
    assert (here.returncode, here.stdout, here.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.stdout or fresh.stderr  # each call says something to compare


def test_invoke_in_this_process_sees_its_environment_and_leaves_this_one_as_it_was(repository: Path, tmp_path: Path) -> None:
    before = (dict(os.environ), os.getcwd(), list(sys.path), tempfile.gettempdir(), sys.stdout, sys.stderr, "tasks" in sys.modules)
    target = tmp_path / "github-output"
    target.write_text("")

    result = invoke(repository, "services", "--github-output", env={"GITHUB_OUTPUT": str(target), "TMPDIR": str(tmp_path)})

    assert target.read_text().startswith("services="), target.read_text()
    assert result.stdout
    assert (dict(os.environ), os.getcwd(), list(sys.path), tempfile.gettempdir(), sys.stdout, sys.stderr, "tasks" in sys.modules) == before


def test_an_environment_an_interpreter_reads_as_it_starts_gets_a_fresh_one(repository: Path, tmp_path: Path) -> None:
    # PYTHONPATH is read as an interpreter starts, and its sitecustomize runs then: only a
    # process of its own says so.
    tmp_path.joinpath("sitecustomize.py").write_text("import sys\nsys.stderr.write('a fresh interpreter\\n')\n")
    result = invoke(repository, "services", env={"PYTHONPATH": str(tmp_path)})
    assert result.stderr.startswith("a fresh interpreter\n"), result.stderr


def test_a_test_using_the_built_wheelhouse_needs_the_index_and_is_marked_so() -> None:
    # built_copy uses built_repo, whose build-wheels downloads from the index: conftest marks
    # the test network, so the fast tier and an offline run leave it out.
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-m", "network", "tests/test_testsuite.py"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout
    assert "tests/test_testsuite.py::test_jobs_1_runs_every_test_in_one_process_without_workers" in listed, listed
    assert "test_a_jobs_value_that_is_not_a_count" not in listed, listed
