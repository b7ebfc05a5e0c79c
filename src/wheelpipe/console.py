"""Progress lines for long steps, and the one way the pipeline runs other tools."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from .errors import ToolError

# One lock for every reporter: they may share a stream (stderr).
_OUTPUT = threading.Lock()

T = TypeVar("T")
R = TypeVar("R")
# A command line's word: paths are passed as they are and turned into text once, here.
Argument = str | os.PathLike[str]


class TextStream(Protocol):
    """Where a reporter writes: stderr, a StringIO, or one build's prefixed lines."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


@dataclass
class Reporter:
    """Prints what a step is doing; with verbose, also every command it runs."""

    verbose: bool = False
    stream: TextStream = field(default=sys.stderr)
    started: float = field(default_factory=time.monotonic)

    def step(self, message: str) -> None:
        self.line(f"==> {message}")

    def info(self, message: str) -> None:
        self.line(f"    {message}")

    def command(self, argv: Sequence[Argument], cwd: Path | None) -> None:
        if self.verbose:
            where = f" (in {cwd})" if cwd else ""
            self.line(f"    $ {shlex.join(str(a) for a in argv)}{where}")

    def line(self, text: str) -> None:
        """One whole line, text and newline in a single write: steps run on several threads,
        and print() writes the two separately, so their lines would interleave."""
        with _OUTPUT:
            self.stream.write(f"{text}\n")
            self.stream.flush()


def run(
    argv: Sequence[Argument],
    *,
    reporter: Reporter,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing its output; on failure raise ToolError naming `what` failed.

    Output is shown only with --verbose, or on failure, so that progress stays readable.
    """
    reporter.command(argv, cwd)
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=tool_environment(env),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if reporter.verbose:
        for line in (result.stdout + result.stderr).splitlines():
            reporter.line(f"      {line}")
    if result.returncode != 0:
        raise ToolError(f"{what} failed (exit {result.returncode}): {_last_error_line(result)}", result.stdout + result.stderr)
    return result


# Prefixes of the variables through which pip, pip-tools and uv take configuration: a
# machine's mirror, constraint file or cache setting must never reach a lock or a build.
_TOOL_CONFIG_PREFIXES = ("PIP_", "UV_", "PIP_TOOLS_")


def tool_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any installer configuration, plus `extra`.

    PIP_CONFIG_FILE=os.devnull makes pip skip every configuration file (global, user and
    site); UV_NO_CONFIG does the same for uv. Proxy and CA settings stay: they say how to
    reach an index, not which one or what to take from it.
    """
    clean = {key: value for key, value in os.environ.items() if not key.startswith(_TOOL_CONFIG_PREFIXES)}
    clean.update({"PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})
    if extra:
        clean.update(extra)
    return clean


def parallel(function: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """`function` over `items` on up to `workers` threads, results in order.

    On the first failure, or Ctrl-C, jobs not yet started are cancelled instead of run: a
    plain `with ThreadPoolExecutor` would start every queued build before giving up.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = [pool.submit(function, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _last_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The most telling line of a failed tool's output: its last error, else its last line."""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.lower().startswith(("error", "fatal", "could not", "cannot")) or "error:" in line.lower():
            return line
    return lines[-1] if lines else "no output"
