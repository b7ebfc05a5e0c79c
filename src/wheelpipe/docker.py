"""Talking to the Docker engine: reachability, images, one-off containers."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
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

    def set_architecture(self, reference: str, architecture: str, variant: str, scratch: Path) -> None:
        """Make the image `reference` say it is for `architecture` (and `variant`), its layers
        unchanged: saved, its config rewritten, loaded again under the same tag.

        `docker import --platform` is honoured only by an engine with multi-platform support
        (before Docker 23, an experimental one); elsewhere an imported root file system is
        recorded as the host's, and `docker run --platform linux/arm64` then finds no image.
        """
        old_id = self.image_id(reference)
        saved, rewritten = scratch / "saved.tar", scratch / "rewritten.tar"
        self.run("save", "--output", str(saved), reference, what=f"saving {reference}")
        with tarfile.open(saved) as source, tarfile.open(rewritten, "w") as target:
            manifest = json.loads(_member(source, "manifest.json"))
            config = json.loads(_member(source, manifest[0]["Config"]))
            config["architecture"], config["variant"] = architecture, variant
            config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
            config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
            replaced = {"manifest.json", manifest[0]["Config"], "repositories"}
            for member in source.getmembers():
                if member.name not in replaced:
                    target.addfile(member, source.extractfile(member) if member.isfile() else None)
            manifest[0].update(Config=config_name, RepoTags=[reference])
            for name, data in ((config_name, config_bytes), ("manifest.json", json.dumps(manifest).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                target.addfile(info, io.BytesIO(data))
        self.run("load", "--input", str(rewritten), what=f"loading {reference} for {architecture}")
        if old_id and old_id != self.image_id(reference):
            self.run("image", "rm", old_id, what=f"removing {reference}'s image as it was imported", check=False)

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


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    file = archive.extractfile(name)
    if file is None:
        msg = f"docker save wrote no file {name!r} in its archive"
        raise DockerError(msg)
    return file.read()
