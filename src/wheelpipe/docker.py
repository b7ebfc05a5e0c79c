"""Talking to the Docker engine: reachability, images, one-off containers."""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .errors import DockerError, ToolError
from .tools import CompletedProcess, run, stream_output

START_HINT = "start it (e.g. `sudo systemctl start docker`, or `dockerd &` as root; CI runs .ci/docker-engine)"


@dataclass(frozen=True)
class Tree:
    """Part of a directory read out of an image."""

    directories: frozenset[PurePosixPath]  # every subdirectory
    files: dict[PurePosixPath, bytes]  # the files asked for, by path
    links: frozenset[PurePosixPath] = frozenset()  # every symbolic or hard link


@dataclass(frozen=True)
class Docker:
    """The docker client to use, and whether it builds with BuildKit."""

    command: str = "docker"
    buildkit: bool = False

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_BUILDKIT": "1" if self.buildkit else "0"}

    def run(self, *args: str, what: str, check: bool = True) -> CompletedProcess[str]:
        try:
            return run([self.command, *args], what=what, env=self.env, check=check)
        except FileNotFoundError:
            msg = f"the docker client {self.command!r} is not installed; install Docker (Debian: apt-get install docker.io)"
            raise DockerError(msg) from None

    def require_engine(self) -> None:
        try:
            self.run("info", "--format", "{{.ServerVersion}}", what="docker info")
        except ToolError as error:
            msg = f"cannot reach the Docker engine ({error}); {START_HINT}"
            raise DockerError(msg) from None

    def image_id(self, reference: str) -> str | None:
        try:
            result = self.run("image", "inspect", "--format", "{{.Id}}", reference, what=f"inspecting {reference}")
        except ToolError:
            return None
        return result.stdout.strip()

    def image_ids(self, references: list[str]) -> list[str] | None:
        """The ids of several images in one call, in order; None when any is missing."""
        try:
            result = self.run("image", "inspect", "--format", "{{.Id}}", *references, what=f"inspecting {', '.join(references)}")
        except ToolError:
            return None
        return result.stdout.split()

    def inspect(self, reference: str) -> dict[str, Any]:
        result = self.run("image", "inspect", reference, what=f"inspecting {reference}")
        document: dict[str, Any] = json.loads(result.stdout)[0]
        return document

    def last_log_line(self, container: str) -> str:
        """The container's last line of output, which usually says why it stopped; "" for none."""
        logs = self.run("logs", "--tail", "5", container, what="reading the container's log", check=False)
        lines = [line.strip() for line in (logs.stdout + logs.stderr).splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def config(self, image: str) -> dict[str, Any]:
        """The image's configuration (Env, User, Entrypoint, Healthcheck, ...)."""
        result = self.run("image", "inspect", "--format", "{{json .Config}}", image, what=f"inspecting {image}")
        return json.loads(result.stdout) or {}

    def python(self, image: str, code: str, python: str = "python3") -> str:
        """Run Python code in a throwaway container with no network; return its output."""
        result = self.run(
            "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", python, image, "-c", code,
            what=f"running {python} in {image}",
        )
        return result.stdout

    def read_tree(self, image: str, path: str, wanted: Callable[[PurePosixPath], bool]) -> Tree:
        """A directory of an image: its subdirectories, and the contents of the files `wanted`
        accepts (paths relative to the directory).

        Read through a container that is created and never started: nothing in the image runs,
        and there is no network, process or health check to set up or wait for.
        """
        container = self.run("create", image, what=f"creating a container of {image}").stdout.strip()
        try:
            tree = self._read_archive(container, path, wanted, what=f"copying {path} out of {image}")
        except BaseException:
            with contextlib.suppress(ToolError):  # the read's failure is the one worth reporting
                self.run("rm", container, what="removing the container")
            raise
        self.run("rm", container, what=f"removing the container made to read {image}")
        return tree

    def _read_archive(self, container: str, path: str, wanted: Callable[[PurePosixPath], bool], what: str) -> Tree:
        # `docker cp` to stdout streams a tar (stream_output reads it to its end: docker may
        # still be writing the trailing blocks when the archive's end is seen); writing the
        # whole tree to disk (what `docker cp` to a directory does) costs several times more.
        directories: set[PurePosixPath] = set()
        files: dict[PurePosixPath, bytes] = {}
        links: set[PurePosixPath] = set()
        broken = ""
        argv = [self.command, "cp", f"{container}:{path}", "-"]
        with stream_output(argv, what=what, shown=True, env=self.env) as tar:
            try:
                with tarfile.open(fileobj=tar, mode="r|") as archive:
                    for member in archive:
                        # Members are named from the directory itself (venv/...): drop that part.
                        relative = PurePosixPath(*PurePosixPath(member.name).parts[1:])
                        if relative.is_absolute() or ".." in relative.parts:
                            continue  # not a path inside the directory: nothing docker cp makes
                        if member.isdir():
                            directories.add(relative)
                        elif member.issym() or member.islnk():
                            links.add(relative)
                        elif member.isfile() and wanted(relative):
                            extracted = archive.extractfile(member)
                            files[relative] = extracted.read() if extracted else b""
            except tarfile.TarError as error:
                # Kept until docker has finished: when it failed, its own message says why.
                broken = str(error)
        if broken:
            raise ToolError(f"{what} failed (exit 0): {broken}")
        return Tree(frozenset(directories), files, frozenset(links))
