"""The one way the pipeline runs another program: git, docker, pip, uv, twine, tar, a backend.

Every program gets the same treatment: a clean environment (no installer configuration of
this machine), stdin closed (a tool that asks a question gets end of file instead of waiting
for an answer nobody can see), output captured and shown only with --verbose, secrets
redacted from everything shown, and a failure raised as ToolError naming what failed with
the tool's most telling line. Callers that explain a failure their own way catch ToolError,
or pass check=False and read the result.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from subprocess import CompletedProcess
from typing import BinaryIO, Literal, cast, overload

from .console import Argument, report
from .errors import ToolError

__all__ = ["CompletedProcess", "git", "pipe", "redact", "run", "stream_output", "tool_environment"]

# Read size for streams a tool writes.
_CHUNK = 1 << 16
# A URL's user:password@ (or token@) part.
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
REDACTED = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without credentials: a URL's user:password@ part, and every secret's value."""
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    # Longest first: a secret that contains another is still replaced whole.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def run(
    argv: Sequence[Argument],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    check: bool = True,
    secrets: Iterable[str] = (),
) -> CompletedProcess[str]:
    """Run a tool, capturing its output; on failure (with check) raise ToolError naming `what`.

    Output is shown only with --verbose, or on failure, so that progress stays readable.
    `secrets` (a password, a token) never appear in what is shown: the command, the output,
    the error. The returned result is the tool's own output, unredacted.
    """
    secrets = tuple(secrets)
    _echo(argv, cwd, secrets)
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=tool_environment(env),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    _show_output(result.stdout + result.stderr, secrets)
    if check and result.returncode != 0:
        raise _failure(what, result.returncode, result.stdout, result.stderr, secrets)
    return result


@contextlib.contextmanager
def stream_output(
    argv: Sequence[Argument],
    *,
    what: str,
    shown: bool = False,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[BinaryIO]:
    """A tool whose standard output is binary data, read as it comes (a tar from
    `docker cp CONTAINER:PATH -`, a file from `git cat-file`), never held whole.

    Once the reader is done, what it left is read to the end before the tool is waited for:
    a tar's end comes before the stream's (the tool may still be writing trailing blocks),
    and closing the pipe early would kill the tool with SIGPIPE, a failure that is not one.
    Then a tool that failed raises ToolError with its last line of stderr. If the reader
    raises, the tool is killed and the reader's exception goes on. `shown`: the command is
    shown with --verbose (a read of git's objects is not).
    """
    if shown:
        _echo(argv, cwd, ())
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [str(a) for a in argv], cwd=cwd, env=tool_environment(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
        )
        output = cast(BinaryIO, process.stdout)  # stdout=PIPE: a buffered binary reader
        try:
            yield output
            while output.read(_CHUNK):
                pass
        except BaseException:
            process.kill()
            raise
        finally:
            output.close()
            process.wait()
        if process.returncode != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace")
            raise _failure(what, process.returncode, "", said, ())


def pipe(
    producer: Sequence[Argument],
    consumer: Sequence[Argument],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> CompletedProcess[str]:
    """`producer | consumer`: the producer's output goes straight into the consumer (a tar of a
    directory into `docker import -`), never through this process's memory or a file. The
    consumer's output is captured as run() captures it; either one failing raises ToolError,
    the consumer's failure first (a producer whose reader died fails too, of SIGPIPE)."""
    if report.verbose:
        where = f" (in {cwd})" if cwd else ""
        report.line(f"    $ {shlex.join(str(a) for a in producer)} | {shlex.join(str(a) for a in consumer)}{where}")
    environment = tool_environment(env)
    with tempfile.TemporaryFile() as errors:
        source = subprocess.Popen(
            [str(a) for a in producer], cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
        )
        output = cast(BinaryIO, source.stdout)  # stdout=PIPE
        try:
            result = subprocess.run(
                [str(a) for a in consumer], cwd=cwd, env=environment, stdin=output, capture_output=True, text=True, check=False
            )
        finally:
            # Closed here too, so that the producer sees a consumer that is gone.
            output.close()
            source.wait()
        errors.seek(0)
        said = errors.read().decode(errors="replace")
    _show_output(said + result.stdout + result.stderr, ())
    if result.returncode != 0:
        raise _failure(what, result.returncode, result.stdout, result.stderr, ())
    if source.returncode != 0:
        raise _failure(f"{what} ({Path(str(producer[0])).name})", source.returncode, "", said, ())
    return result


@overload
def git(
    root: Path, *args: str, check: bool = ..., binary: Literal[False] = ..., stdin: str | None = ...,
    errors: str = ...,
) -> CompletedProcess[str]: ...


@overload
def git(
    root: Path, *args: str, check: bool = ..., binary: Literal[True], stdin: str | None = ...,
    errors: str = ...,
) -> CompletedProcess[bytes]: ...


def git(
    root: Path,
    *args: str,
    check: bool = True,
    binary: bool = False,
    stdin: str | None = None,
    errors: str = "surrogateescape",
) -> CompletedProcess[str] | CompletedProcess[bytes]:
    """git in `root`. Output is text decoded as UTF-8 with `errors` (by default undecodable
    bytes of a file name are kept, as os.fsdecode keeps them), or with binary, the bytes
    themselves. With check, a failure raises ToolError; without, the caller reads the exit
    code (`git check-ignore` answers with it). A missing git raises FileNotFoundError.
    Nothing is shown, even with --verbose: git is asked questions, not run for effect.
    """
    argv = ["git", *args]
    data = stdin.encode("utf-8", "surrogateescape") if stdin is not None else None
    result = subprocess.run(
        argv, cwd=root, env=tool_environment(), input=data, stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True, check=False,
    )
    stdout = result.stdout.decode("utf-8", errors="replace")
    stderr = result.stderr.decode("utf-8", errors="replace")
    if check and result.returncode != 0:
        raise _failure(f"git {' '.join(args)}", result.returncode, stdout, stderr, ())
    if binary:
        return result
    return CompletedProcess(
        result.args, result.returncode, result.stdout.decode("utf-8", errors), result.stderr.decode("utf-8", errors)
    )


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


def _echo(argv: Sequence[Argument], cwd: Path | None, secrets: Sequence[str]) -> None:
    report.command([redact(str(a), secrets) for a in argv], cwd)


def _show_output(output: str, secrets: Sequence[str]) -> None:
    if report.verbose:
        for line in redact(output, secrets).splitlines():
            report.line(f"      {line}")


def _failure(what: str, returncode: int, stdout: str, stderr: str, secrets: Sequence[str]) -> ToolError:
    detail = _last_error_line(stdout, stderr)
    return ToolError(redact(f"{what} failed (exit {returncode}): {detail}", secrets), redact(stdout + stderr, secrets), returncode)


def _last_error_line(stdout: str, stderr: str) -> str:
    """The most telling line of a failed tool's output: its last error, else its last line."""
    lines = [line.strip() for line in (stderr or stdout).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.lower().startswith(("error", "fatal", "could not", "cannot")) or "error:" in line.lower():
            return line
    return lines[-1] if lines else "no output"
