"""`invoke bench`: the pipeline's speed measured against the naive way, in the same run.

Each figure is the wall time of a real command in a fresh clone of the repository's
HEAD; pip's download cache is shared by both sides, so neither pays for the network
more than the other.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .console import Reporter, run
from .model import Repository, load_repository
from .wheelhouse import build_wheels


@dataclass
class Row:
    measure: str
    seconds: float
    note: str = ""


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def clone(repo: Repository, destination: Path, reporter: Reporter) -> Repository:
    run(["git", "clone", "-q", "--no-hardlinks", repo.root, destination], reporter=reporter, what="cloning the repository")
    return load_repository(destination)


def invoke(repo: Repository, *args: str, reporter: Reporter, env: dict[str, str] | None = None) -> None:
    run([sys.executable, "-m", "invoke", *args], reporter=reporter, what=f"invoke {' '.join(args)}", cwd=repo.root, env=env)


def one_line_change(repo: Repository) -> str:
    """Append a line to the first module of the first service, as a developer's edit would."""
    service = next(iter(repo.services.values()))
    module = sorted((service.path / "src").rglob("*.py"))[0]
    with module.open("a") as stream:
        stream.write("# bench: a one-line change\n")
    return f"{service.directory}: {module.name}"


def naive_wheelhouse(repo: Repository, outdir: Path, reporter: Reporter, env: dict[str, str]) -> None:
    """What a bare pip-tools setup does: `python -m build` per package, `pip wheel -r` per service."""
    for package in repo.packages.values():
        run([sys.executable, "-m", "build", "--outdir", outdir, package.path], reporter=reporter, what=f"naive build of {package.label}", env=env)
    for service in repo.services:
        run(
            [sys.executable, "-m", "pip", "wheel", "--require-hashes", "--no-deps", "-w", outdir, "-r", repo.lock_path(service)],
            reporter=reporter,
            what=f"naive pip wheel for {service}",
            env=env,
        )


def wheelhouse_rows(repo: Repository, reporter: Reporter) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-") as tmp:
        # Cold means a fresh machine: no wheelhouse and an empty pip cache, for both sides.
        ours_cache = {"PIP_CACHE_DIR": str(Path(tmp, "cache-ours"))}
        naive_cache = {"PIP_CACHE_DIR": str(Path(tmp, "cache-naive"))}
        ours = clone(repo, Path(tmp, "ours"), reporter)
        reporter.step("timing build-wheels: cold, warm cache, no-op, after a one-line change")
        cold = timed(lambda: invoke(ours, "build-wheels", reporter=reporter, env=ours_cache))
        warm = timed(lambda: invoke(ours, "build-wheels", "--clean", reporter=reporter, env=ours_cache))
        noop = timed(lambda: invoke(ours, "build-wheels", reporter=reporter, env=ours_cache))
        # The same no-op without the interpreter's and invoke's start-up (~0.15 s of the above).
        quiet = Reporter(stream=io.StringIO())
        noop_work = timed(lambda: build_wheels(load_repository(ours.root), reporter=quiet))
        changed = one_line_change(ours)
        incremental = timed(lambda: invoke(ours, "build-wheels", reporter=reporter, env=ours_cache))
        check = timed(lambda: invoke(ours, "lock", "--check", reporter=reporter))
        reporter.step("timing the naive way: python -m build per package, pip wheel -r per service")
        naive_repo = clone(repo, Path(tmp, "naive"), reporter)
        naive = timed(lambda: naive_wheelhouse(naive_repo, Path(tmp, "naive-wheels"), reporter, naive_cache))
        naive_warm = timed(lambda: naive_wheelhouse(naive_repo, Path(tmp, "naive-wheels-2"), reporter, naive_cache))
    return [
        Row("build-wheels, cold (no wheelhouse, empty pip cache)", cold, f"naive: {naive:.2f} s ({naive / cold:.1f}x slower)"),
        Row("build-wheels --clean, warm pip cache", warm, f"naive: {naive_warm:.2f} s ({naive_warm / warm:.1f}x slower)"),
        Row("build-wheels, nothing changed", noop, f"{noop / cold:.1%} of cold, {noop / warm:.1%} of warm"),
        Row("build-wheels, nothing changed, in-process", noop_work, "the pipeline's own work, without start-up"),
        Row("build-wheels, one-line change", incremental, changed),
        Row("lock --check", check, "recompiles every lock with pip-compile"),
        Row("naive, cold: build per package + pip wheel -r per service", naive, "same clone, its own empty pip cache"),
        Row("naive, warm pip cache", naive_warm, ""),
    ]


def wheelhouse_verdicts(rows: list[Row]) -> list[str]:
    """The issue's targets, judged on this run's figures."""
    cold, warm, noop, noop_work, _, _, naive, naive_warm = (row.seconds for row in rows)
    return [
        f"no-op <= 1 s: {'met' if noop <= 1 else 'MISSED'} ({noop:.2f} s)",
        f"no-op <= 5% of cold: {'met' if noop <= 0.05 * cold else 'MISSED'} ({noop / cold:.1%}; in-process {noop_work / cold:.1%})",
        f"cold faster than naive: {'met' if cold < naive else 'MISSED'} ({cold:.2f} s vs {naive:.2f} s; warm {warm:.2f} s vs {naive_warm:.2f} s)",
    ]


def table(rows: list[Row]) -> str:
    width = max(len(r.measure) for r in rows)
    lines = [f"{'measure':<{width}}  {'seconds':>8}  note", f"{'-' * width}  {'-' * 8}  {'-' * 4}"]
    lines += [f"{r.measure:<{width}}  {r.seconds:>8.2f}  {r.note}" for r in rows]
    return "\n".join(lines)
