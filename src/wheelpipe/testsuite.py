"""`invoke test`: the pytest command it runs, in pytest-xdist workers.

The suite runs in workers, one per CPU and one more unless `--jobs` says otherwise. Much of
a pipeline test's time is spent waiting on something outside pytest (an index, a container, a
build in a subprocess), so workers overlap those waits even on few CPUs, and with one worker
per CPU a CPU still idles a third of the run (measured on 2 CPUs: 10.6 minutes with two
workers, 9.5 with three).

Each test file runs whole in one worker, in its order (`--dist loadfile`): its module
fixtures (a locked and built monorepo, say) are made once, as in a run without workers, and
only tests of different files ever run at the same time. (Not `--dist loadgroup`, which would
let a file name a group to share: with pytest 9.2 it silently stops grouping,
pytest-dev/pytest-xdist#1386.)
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

from .errors import PipelineError
from .requirements import TOOLING, lock_file
from .tools import run

# What `invoke test --fast` leaves out: the pytest markers of tests that need more than this
# machine's CPU and disk.
FAST = "not docker and not network and not slow"

# pytest's exit code when it ran no test: none collected, or all deselected (-k, -m).
NO_TESTS_RAN = 5

# --jobs: one worker per CPU this process may run on, and one more to fill the waits;
# PYTEST_XDIST_AUTO_NUM_WORKERS, when set, is the number (as for pytest-xdist's own "auto").
AUTO = "auto"


def workers(jobs: str) -> int:
    """The number of workers `--jobs` asks for (1: none, one process)."""
    value = str(jobs).strip()
    if value == AUTO:
        forced = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()
        if forced.isdigit() and int(forced) >= 1:
            return int(forced)
        return len(os.sched_getaffinity(0)) + 1
    if value.isdigit() and int(value) >= 1:
        return int(value)
    msg = f'invoke test --jobs: expected a number of workers (1 runs the tests in one process) or "{AUTO}" (one per CPU, and one more), found "{jobs}"'
    raise PipelineError(msg)


def suite_command(*, jobs: str = AUTO, fast: bool = False, k: str | None = None, verbose: bool = False) -> list[str]:
    """The pytest command line of `invoke test`, run from the repository's root."""
    count = workers(jobs)
    command = [sys.executable, "-m", "pytest"]
    if count != 1:
        if importlib.util.find_spec("xdist") is None:
            msg = (
                f"pytest-xdist is not installed in the tooling venv ({sys.prefix}), and invoke test runs its workers; "
                f"add it to {lock_file(TOOLING, 'in')}, run `invoke lock` and install {lock_file(TOOLING)}, or run `invoke test --jobs 1`"
            )
            raise PipelineError(msg)
        command += ["--numprocesses", str(count), "--dist", "loadfile"]
    if fast:
        command += ["-m", FAST]
    if k:
        command += ["-k", k]
    if verbose:
        command.append("-v")
    return command


def collected_tests(root: Path) -> int | None:
    """How many tests pytest collects in `root` with no selection; None when it cannot say
    (a collection error, which the run before this one has shown)."""
    result = run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], what="pytest --collect-only", cwd=root, check=False)
    if result.returncode == NO_TESTS_RAN:
        return 0
    counted = re.search(r"^(\d+) tests? collected", result.stdout, re.MULTILINE)
    return int(counted.group(1)) if result.returncode == 0 and counted else None


def nothing_ran(root: Path, *, k: str | None, fast: bool) -> str:
    """What pytest's exit 5 means here, in one line: a repository with no tests is not a
    failure (a team's first afternoon); a -k that matches none of its tests is, raised."""
    if not (k or fast):
        return "no tests: pytest collected none in this repository; nothing to run"
    total = collected_tests(root)
    if total == 0:
        return "no tests: pytest collected none in this repository; nothing to run"
    found = f"the repository has {total} test{'s' if total != 1 else ''}" if total is not None else "pytest selected none"
    if k:
        also = f" among those --fast leaves (-m '{FAST}')" if fast else ""
        msg = f"invoke test -k {k!r}: no test matches{also}; {found}"
        raise PipelineError(msg)
    return f"no test in the fast tier (-m '{FAST}'): {found}, each needing Docker, a package index or a whole build; nothing to run"
