"""Every failure the pipeline reports to a user.

Library code raises these; the command layer (tasks.py) turns them into one line and
a non-zero exit. Each message names the file, package or service and says what was
expected and what was found.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class RepositoryError(PipelineError):
    """The monorepo's layout or a package's pyproject.toml is not what the model expects."""


class UnknownServiceError(PipelineError):
    def __init__(self, name: str, known: list[str]) -> None:
        valid = ", ".join(known) or "none"
        super().__init__(f"unknown service {name!r}: expected one of {valid}")


class TargetError(PipelineError):
    """The host (or a base image) cannot produce or run artefacts for the declared target."""


class LockError(PipelineError):
    """A lock file is malformed, stale or conflicts with another lock."""


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


class ToolError(PipelineError):
    """An underlying tool (pip, pip-compile, build, docker) failed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output  # everything the tool printed, for callers that explain failures


class DockerError(PipelineError):
    """The Docker engine is unreachable or an image does not match what was expected."""


class GitError(PipelineError):
    """A git reference the pipeline was given does not exist, or git itself failed."""


class PublishError(PipelineError):
    """Publishing wheels to a package index failed: no index configured, refused, or already there."""
