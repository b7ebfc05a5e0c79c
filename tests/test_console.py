"""Progress output stays one whole line per step when steps run on several threads."""

from __future__ import annotations

import io
import threading

from wheelpipe.console import Reporter


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
