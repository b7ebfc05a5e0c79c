"""Talking to the Docker engine: reachability, images, one-off containers."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from .console import Reporter, run
from .errors import DockerError, ToolError

START_HINT = "start it (e.g. `sudo systemctl start docker`, or `dockerd &` as root; CI runs .ci/docker-engine)"


@dataclass(frozen=True)
class Docker:
    """The docker client to use, and whether it builds with BuildKit."""

    command: str = "docker"
    buildkit: bool = False

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_BUILDKIT": "1" if self.buildkit else "0"}

    def run(self, *args: str, reporter: Reporter, what: str) -> subprocess.CompletedProcess[str]:
        try:
            return run([self.command, *args], reporter=reporter, what=what, env=self.env)
        except FileNotFoundError:
            msg = f"the docker client {self.command!r} is not installed; install Docker (Debian: apt-get install docker.io)"
            raise DockerError(msg) from None

    def require_engine(self, reporter: Reporter) -> None:
        try:
            self.run("info", "--format", "{{.ServerVersion}}", reporter=reporter, what="docker info")
        except ToolError as error:
            msg = f"cannot reach the Docker engine ({error}); {START_HINT}"
            raise DockerError(msg) from None

    def image_id(self, reference: str, reporter: Reporter) -> str | None:
        try:
            result = self.run("image", "inspect", "--format", "{{.Id}}", reference, reporter=reporter, what=f"inspecting {reference}")
        except ToolError:
            return None
        return result.stdout.strip()

    def inspect(self, reference: str, reporter: Reporter) -> dict:
        result = self.run("image", "inspect", reference, reporter=reporter, what=f"inspecting {reference}")
        return json.loads(result.stdout)[0]

    def python(self, image: str, code: str, reporter: Reporter, python: str = "python3") -> str:
        """Run Python code in a throwaway container with no network; return its output."""
        result = self.run(
            "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", python, image, "-c", code,
            reporter=reporter,
            what=f"running {python} in {image}",
        )
        return result.stdout
