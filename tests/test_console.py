"""Progress output stays one whole line per step when steps run on several threads."""

from __future__ import annotations

import io
import threading

import pytest

from wheelpipe.console import Reporter, parallel, quiet, report, reporting


class SlowStream(io.StringIO):
    """A stream that gives other threads a chance between any two writes, as a terminal does."""

    def write(self, text: str) -> int:
        written = super().write(text)
        threading.Event().wait(0.0005)
        return written


def test_lines_from_concurrent_steps_never_interleave() -> None:
    stream = SlowStream()
    reporter = Reporter(stream=stream)

    def report(worker: int) -> None:
        for number in range(40):
            reporter.info(f"building package {worker}-{number}")

    threads = [threading.Thread(target=report, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 160
    assert all(line.startswith("    building package ") and line.count("building") == 1 for line in lines), lines


def test_the_reporter_a_command_sets_reaches_every_step_and_every_thread_it_starts() -> None:
    shown = io.StringIO()
    with reporting(Reporter(verbose=True, stream=shown)):
        parallel(lambda worker: report.info(f"step on worker {worker}"), range(6), workers=3)
        report.command(["uv", "pip", "install"], None)  # shown: --verbose holds here too
        with quiet():
            report.info("a question, not a step")
            parallel(lambda worker: report.info(f"quiet {worker}"), range(2), workers=2)
        report.step("after the question")
    lines = shown.getvalue().splitlines()
    assert sorted(lines[:6]) == [f"    step on worker {n}" for n in range(6)]
    assert lines[6:] == ["    $ uv pip install", "==> after the question"]


def test_outside_any_command_a_step_reports_plainly_on_the_stderr_of_the_moment(capsys: pytest.CaptureFixture[str]) -> None:
    report.info("no command set a reporter")
    report.command(["git", "status"], None)  # not verbose: not shown
    assert capsys.readouterr().err == "    no command set a reporter\n"
