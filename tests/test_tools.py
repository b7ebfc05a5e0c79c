"""The one seam for other programs (wheelpipe.tools): what is shown, what a failure says, streams.

The programs here are stand-ins (small Python scripts), because what is pinned down is what
the seam does with any program's arguments, output and exit: no real tool needs to fail.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from wheelpipe import tools
from wheelpipe.console import Reporter, reporting
from wheelpipe.errors import ToolError

SOURCE = Path(tools.__file__).parent
PASSWORD = "correct-horse-battery-7"
TOKEN = "ghp_s3cr3tT0ken"
# A tool that prints its arguments and the secret it was given, on both streams, and fails.
LEAKY = f"""
import sys
print("uploading with", " ".join(sys.argv[1:]))
print("error: HTTPError: 403 Forbidden for https://ci:{PASSWORD}@index.example/ (password {PASSWORD})", file=sys.stderr)
sys.exit(3)
"""


def script(tmp_path: Path, name: str, code: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(code)
    return [sys.executable, str(path)]


def test_no_module_but_tools_starts_a_program_itself() -> None:
    starts = re.compile(r"^\s*(import subprocess|from subprocess import|import pty|from pty import)|\bos\.(system|popen|exec\w*|spawn\w*|posix_spawn\w*)\(", re.MULTILINE)
    found = {path.relative_to(SOURCE).as_posix() for path in SOURCE.rglob("*.py") if starts.search(path.read_text())}
    assert "tools.py" in found, "the pattern no longer finds tools.py's own import: it finds nothing"
    assert found == {"tools.py"}, f"only tools.py may start programs (one environment, redaction, error type): {sorted(found - {'tools.py'})}"


def test_a_secret_in_the_arguments_and_the_output_is_never_shown_verbose_or_in_the_error(tmp_path: Path) -> None:
    shown = io.StringIO()
    argv = [*script(tmp_path, "leaky", LEAKY), "--password", PASSWORD, f"https://{TOKEN}@index.example/"]
    with pytest.raises(ToolError) as failed, reporting(Reporter(verbose=True, stream=shown)):
        tools.run(argv, what="uploading order.whl", secrets=[PASSWORD])
    everything = shown.getvalue() + str(failed.value) + failed.value.output
    assert PASSWORD not in everything
    assert TOKEN not in everything  # a URL's userinfo, secret or not
    assert str(failed.value) == "uploading order.whl failed (exit 3): error: HTTPError: 403 Forbidden for https://***@index.example/ (password ***)"
    assert failed.value.returncode == 3
    # What is shown is still the command and its output, only without the secrets.
    assert "--password *** https://***@index.example/" in shown.getvalue()
    assert "      uploading with --password *** https://***@index.example/" in shown.getvalue()


def test_without_check_the_caller_gets_the_tools_own_output_to_read(tmp_path: Path) -> None:
    shown = io.StringIO()
    with reporting(Reporter(verbose=True, stream=shown)):
        result = tools.run([*script(tmp_path, "leaky", LEAKY), PASSWORD], what="x", check=False, secrets=[PASSWORD])
    assert result.returncode == 3
    assert f"password {PASSWORD}" in result.stderr
    assert PASSWORD not in shown.getvalue()


def test_a_tool_never_waits_for_input_nobody_can_type(tmp_path: Path) -> None:
    asks = script(tmp_path, "asks", "import sys\nanswer = sys.stdin.readline()\nprint(repr(answer))\n")
    assert tools.run(asks, what="asking").stdout.strip() == "''"


# Writes a whole tar record, then (later, as a client still writing its trailing blocks) one
# more block, then says it finished. A reader that closed the pipe early would kill it.
SLOW_WRITER = """
import sys, time
from pathlib import Path
sys.stdout.buffer.write(b"x" * 10240)
sys.stdout.buffer.flush()
time.sleep(0.5)
sys.stdout.buffer.write(b"\\0" * 512)
sys.stdout.buffer.flush()
Path(sys.argv[1]).write_text("finished")
"""


def test_a_stream_is_read_to_its_end_before_the_tool_is_waited_for(tmp_path: Path) -> None:
    finished = tmp_path / "finished"
    with tools.stream_output([*script(tmp_path, "writer", SLOW_WRITER), finished], what="copying a tree") as output:
        assert output.read(512) == b"x" * 512  # the reader wants only the start
    assert finished.read_text() == "finished"


def test_a_failed_stream_raises_with_the_tools_last_error_line(tmp_path: Path) -> None:
    failing = script(tmp_path, "failing", "import sys\nprint('reading object', file=sys.stderr)\nprint('fatal: bad object 1234', file=sys.stderr)\nsys.exit(128)\n")
    with pytest.raises(ToolError) as failed, tools.stream_output(failing, what="git cat-file --filters 1234") as output:
        assert output.read() == b""
    assert str(failed.value) == "git cat-file --filters 1234 failed (exit 128): fatal: bad object 1234"
    assert failed.value.returncode == 128


def test_a_readers_own_failure_goes_on_and_the_tool_is_stopped(tmp_path: Path) -> None:
    endless = script(tmp_path, "endless", "import sys\nwhile True:\n    sys.stdout.buffer.write(b'x' * 65536)\n")
    with pytest.raises(ValueError, match="the reader's own"), tools.stream_output(endless, what="streaming") as output:
        output.read(10)
        raise ValueError("the reader's own")


def test_a_pipe_passes_the_producers_output_to_the_consumer(tmp_path: Path) -> None:
    producer = script(tmp_path, "producer", "import sys\nsys.stdout.write('tar bytes\\n' * 10000)\n")
    consumer = script(tmp_path, "consumer", "import sys\ndata = sys.stdin.read()\nprint(len(data.splitlines()))\n")
    assert tools.pipe(producer, consumer, what="importing").stdout.strip() == "10000"


def test_a_pipe_names_the_consumers_failure_and_then_the_producers(tmp_path: Path) -> None:
    fine = script(tmp_path, "fine", "print('data')\n")
    refusing = script(tmp_path, "refusing", "import sys\nsys.stdin.read()\nprint('Error response from daemon: no space', file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(ToolError, match=r"^docker import of local/python:x failed \(exit 1\): Error response from daemon: no space$"):
        tools.pipe(fine, refusing, what="docker import of local/python:x")
    broken = script(tmp_path, "broken", "import sys\nprint('tar: ./etc: Cannot open: Permission denied', file=sys.stderr)\nsys.exit(2)\n")
    reading = script(tmp_path, "reading", "import sys\nsys.stdin.read()\n")
    with pytest.raises(ToolError, match=r"^docker import of local/python:x \(python\S*\) failed \(exit 2\): tar: ./etc: Cannot open: Permission denied$"):
        tools.pipe(broken, reading, what="docker import of local/python:x")


def test_git_outside_a_repository_fails_with_gits_own_reason_or_answers_with_its_exit_code(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"^git rev-parse HEAD failed \(exit 128\): fatal: not a git repository"):
        tools.git(tmp_path, "rev-parse", "HEAD")
    assert tools.git(tmp_path, "rev-parse", "HEAD", check=False).returncode == 128
