"""Progress lines for long steps, and running steps in parallel (tools.py runs the tools)."""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

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
    # The stderr of the moment the reporter is made, not of the import: a caller that
    # redirects sys.stderr (a task run in-process, as the tests run them) sees its lines.
    stream: TextStream = field(default_factory=lambda: sys.stderr)
    started: float = field(default_factory=time.monotonic)

    def step(self, message: str) -> None:
        self.line(f"==> {message}")

    def info(self, message: str) -> None:
        self.line(f"    {message}")

    def warning(self, message: str) -> None:
        """Something the user should see that does not stop the step."""
        self.line(f"warning: {message}")

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


# The reporter of the command that runs: set once by the task layer (`reporting`, from
# --verbose), read by every step through `report`. A thread starts with the context of
# whoever started it (`parallel`, `in_context`), so no step ever falls back to a reporter
# that drops --verbose.
_CURRENT: ContextVar[Reporter | None] = ContextVar("wheelpipe_reporter", default=None)


def current() -> Reporter:
    """The reporter of this context; outside any command (a test calling a step), a plain one
    on the stderr of the moment."""
    found = _CURRENT.get()
    return found if found is not None else Reporter()


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """`reporter` is the current one for the block (and the threads it starts)."""
    token = _CURRENT.set(reporter)
    try:
        yield reporter
    finally:
        _CURRENT.reset(token)


def quiet() -> contextlib.AbstractContextManager[Reporter]:
    """No line shown for the block, whatever --verbose says: a question asked, not a step."""
    return reporting(Reporter(stream=io.StringIO()))


class _Report:
    """The current reporter, wherever a step asks for it: `report.step(...)`."""

    @property
    def verbose(self) -> bool:
        return current().verbose

    @property
    def stream(self) -> TextStream:
        return current().stream

    def step(self, message: str) -> None:
        current().step(message)

    def info(self, message: str) -> None:
        current().info(message)

    def warning(self, message: str) -> None:
        current().warning(message)

    def command(self, argv: Sequence[Argument], cwd: Path | None) -> None:
        current().command(argv, cwd)

    def line(self, text: str) -> None:
        current().line(text)


report = _Report()


def in_context(function: Callable[..., R]) -> Callable[..., R]:
    """`function`, to run on another thread in a copy of this thread's context (its reporter)."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(function, *args, **kwargs)


def parallel(function: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """`function` over `items` on up to `workers` threads, results in order, each in a copy of
    the caller's context.

    On the first failure, or Ctrl-C, jobs not yet started are cancelled instead of run: a
    plain `with ThreadPoolExecutor` would start every queued build before giving up.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = [pool.submit(in_context(function), item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
