"""Every failure the pipeline reports to a user.

Library code raises these; the command layer (tasks.py) turns them into one line and
a non-zero exit. Each message names the file, package or service and says what was
expected and what was found.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
from pathlib import Path
from types import TracebackType


class PipelineError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class RepositoryError(PipelineError):
    """The monorepo's layout or a package's pyproject.toml is not what the model expects."""


class UnknownServiceError(PipelineError):
    def __init__(self, name: str, known: list[str]) -> None:
        valid = ", ".join(known) or "none"
        # `--service ""` (an unset shell variable) must not quietly mean "every service".
        what = "empty service name" if not name else f"unknown service {name!r}"
        super().__init__(f"{what}: expected one of {valid}")


class TargetError(PipelineError):
    """The host (or a base image) cannot produce or run artefacts for the declared target."""


class LockError(PipelineError):
    """A lock file is malformed, stale or conflicts with another lock."""


class ResolutionError(LockError):
    """A resolver found no solution; `reason` is its own explanation, on one line."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StaleLockError(LockError):
    def __init__(self, stale: dict[str, list[str]]) -> None:
        self.stale = stale
        lines = []
        for path, diff in stale.items():
            lines.append(f"{path} does not match its inputs (run `invoke lock`):")
            lines.extend(f"  {line}" for line in diff)
        super().__init__("\n".join(lines))


class WheelhouseError(PipelineError):
    """The wheelhouse is missing a wheel, or a wheel's bytes differ from its recorded hash."""


class ReleaseError(PipelineError):
    """A release gate failed or the wheelhouse is not fit to ship."""


class ToolError(PipelineError):
    """An underlying tool (pip, pip-compile, build, docker) failed."""

    def __init__(self, message: str, output: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.output = output  # everything the tool printed, for callers that explain failures
        self.returncode = returncode  # the tool's exit code, when a tool ran and failed


class DockerError(PipelineError):
    """The Docker engine is unreachable or an image does not match what was expected."""


class GitError(PipelineError):
    """A git reference the pipeline was given does not exist, or git itself failed."""


class PublishError(PipelineError):
    """Publishing wheels to a package index failed: no index configured, refused, or already there."""


class PackageIndexError(PipelineError):
    """A package index cannot be reached, or does not publish what a lock pins."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the index's HTTP status, when it answered with an error


class HashMismatchError(PipelineError):
    """A file's bytes do not hash to any value its lock allows."""


def describe_os_error(error: OSError, root: Path) -> str:
    """One line for an OSError that escaped the pipeline: the file(s) and the OS's reason.

    Paths under `root` are shown relative to it. A full disk says so and names the file being
    written, so that it is not mistaken for a corrupt download or a hash mismatch.
    """
    files = [_shown(name, root) for name in (error.filename, error.filename2) if name is not None]
    if error.errno in _DISK_FULL:
        # shutil's copies name (source, destination): the destination is the file being written.
        written = files[-1] if files else _file_being_written(error.__traceback__, root)
        return f"{_DISK_FULL[error.errno]} while writing {written or 'an output file (the OS did not say which)'}"
    if error.errno == errno.EPIPE and not files:
        return "broken pipe: whatever read this command's output exited before it was all written"
    reason = " ".join((error.strerror or str(error) or type(error).__name__).split())
    return f"{' -> '.join(files)}: {reason}" if files else reason


_DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def _shown(name: str | bytes | int | os.PathLike[str] | os.PathLike[bytes], root: Path) -> str:
    """A file an OSError names (the str, bytes, path or descriptor the call was given)."""
    if isinstance(name, int):
        return f"file descriptor {name}"
    path = Path(os.fsdecode(name))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _file_being_written(traceback: TracebackType | None, root: Path) -> str | None:
    """The name of the open file the failing code was writing, if any.

    A failed write() on an open file raises an OSError without a file name (the kernel only
    knows the descriptor); the file object in the innermost frame that holds one knows it.
    """
    frames = []
    while traceback is not None:
        frames.append(traceback.tb_frame)
        traceback = traceback.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            name = getattr(value, "name", None)
            if isinstance(value, io.IOBase) and isinstance(name, str) and _opened_for_writing(value):
                return _shown(name, root)
    return None


def _opened_for_writing(stream: io.IOBase) -> bool:
    # A `with` block has usually closed the file by the time the error gets here, and a
    # closed file no longer answers writable(); its mode still says how it was opened. A
    # gzip.GzipFile (the release archive's) keeps its mode as a number, gzip.READ or WRITE.
    mode = getattr(stream, "mode", "")
    if isinstance(mode, str):
        return any(flag in mode for flag in "wax+")
    return isinstance(stream, gzip.GzipFile) and mode == gzip.WRITE
