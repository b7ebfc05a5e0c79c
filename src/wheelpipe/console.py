"""Progress lines for long steps, and the one way the pipeline runs other tools."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ToolError


@dataclass
class Reporter:
    """Prints what a step is doing; with verbose, also every command it runs."""

    verbose: bool = False
    stream: object = field(default=sys.stderr)
    started: float = field(default_factory=time.monotonic)

    def step(self, message: str) -> None:
        print(f"==> {message}", file=self.stream, flush=True)

    def info(self, message: str) -> None:
        print(f"    {message}", file=self.stream, flush=True)

    def command(self, argv: Sequence[str], cwd: Path | None) -> None:
        if self.verbose:
            where = f" (in {cwd})" if cwd else ""
            print(f"    $ {shlex.join(str(a) for a in argv)}{where}", file=self.stream, flush=True)


def run(
    argv: Sequence[str],
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
    merged = dict(os.environ)
    if env:
        merged.update(env)
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=merged,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if reporter.verbose:
        for line in (result.stdout + result.stderr).splitlines():
            print(f"      {line}", file=reporter.stream)
    if result.returncode != 0:
        raise ToolError(f"{what} failed (exit {result.returncode}): {_last_error_line(result)}", result.stdout + result.stderr)
    return result


def _last_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The most telling line of a failed tool's output: its last error, else its last line."""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.lower().startswith(("error", "fatal", "could not", "cannot")) or "error:" in line.lower():
            return line
    return lines[-1] if lines else "no output"
