"""`invoke up` / `invoke down`: every service from its built image, healthy, on configurable ports."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from monorepo import free_port, invoke

pytestmark = pytest.mark.docker


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, json.loads(response.read())


def test_up_runs_every_service_healthy_on_the_configured_ports_and_down_removes_them(built_repo: Path, docker_base_image: str) -> None:
    prefix = f"wheelpipe-test-{uuid.uuid4().hex[:8]}/"
    ports = {"ORDER_MANAGER_PORT": str(free_port()), "USER_MANAGER_PORT": str(free_port())}
    env = {**ports, "INVOKE_IMAGE_BASE": docker_base_image, "INVOKE_IMAGE_PREFIX": prefix}
    try:
        result = invoke(built_repo, "up", env=env)
        assert "order is healthy" in result.stderr and "user is healthy" in result.stderr
        assert "pricing-audit is healthy" in result.stderr  # the worker, by its health command
        compose = (built_repo / "compose.yaml").read_text()
        assert f"{prefix}order:0.1.0" in compose and "ORDER_MANAGER_PORT" in compose
        status, body = get(int(ports["ORDER_MANAGER_PORT"]), "/api/order")
        assert status == 201 and 0 <= body["discount"] <= 20
        status, body = get(int(ports["USER_MANAGER_PORT"]), "/api/user")
        assert status == 201 and body["status"] == "created"
    finally:
        invoke(built_repo, "down", env=env)
        for service in ("order", "pricing-audit", "user"):
            subprocess.run(["docker", "rmi", f"{prefix}{service}:0.1.0"], capture_output=True, check=False)
    running = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={built_repo.name}"], capture_output=True, text=True, check=True)
    assert running.stdout.strip() == ""


def test_up_that_cannot_start_every_service_stops_what_it_started_in_one_line(built_repo: Path, docker_base_image: str) -> None:
    prefix = f"wheelpipe-test-{uuid.uuid4().hex[:8]}/"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {"ORDER_MANAGER_PORT": str(port), "USER_MANAGER_PORT": str(free_port()), "INVOKE_IMAGE_BASE": docker_base_image, "INVOKE_IMAGE_PREFIX": prefix}
    try:
        result = invoke(built_repo, "up", env=env, check=False)
        # Checked before any `down` of the test's own: nothing of this project is left, though
        # the user service and the worker could start.
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={built_repo.name}"], capture_output=True, text=True, check=True)
    finally:
        taken.close()
        invoke(built_repo, "down", env=env, check=False)
        for service in ("order", "pricing-audit", "user"):
            subprocess.run(["docker", "rmi", f"{prefix}{service}:0.1.0"], capture_output=True, check=False)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(port) in lines[0] and lines[0].endswith("; the services that had started were stopped (compose down)"), lines[0]
    assert left.stdout.strip() == ""
