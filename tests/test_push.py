"""`invoke image --push`: a service's image to a real registry on loopback, and back.

The registry is Debian's docker-registry (the CNCF distribution registry; `.ci/registry`
installs it), run by this module on a free loopback port with its storage in a temporary
directory, and stopped at the end. Docker allows plain HTTP to registries on 127.0.0.0/8.
Every tag, image reference and container this module creates is removed at the end, by name;
nothing else in the engine is touched.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import container_registry, free_port, invoke

from wheelpipe import image as images

VERSION = "0.1.0"
NAMESPACE = "wheelpipe-test"
HEALTHY_TIMEOUT = 40.0
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def repo_digests(reference: str) -> list[str]:
    found = docker("image", "inspect", "--format", "{{json .RepoDigests}}", reference, check=False)
    return json.loads(found.stdout) if found.returncode == 0 else []


def image_exists(reference: str) -> bool:
    return docker("image", "inspect", "--format", "{{.Id}}", reference, check=False).returncode == 0


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), b""


class Registry:
    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.prefix = f"{self.host}/{NAMESPACE}/"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_base_image: str) -> Iterator[Registry]:
    """docker-registry serving on a free loopback port, its storage and config in a temporary directory."""
    with container_registry(tmp_path_factory.mktemp("registry")) as port:
        yield Registry(port)


@pytest.mark.parametrize(
    ("prefix", "registry"),
    [
        ("127.0.0.1:5000/team/", "127.0.0.1:5000"),
        ("registry.example.com/team/", "registry.example.com"),
        ("localhost/", "localhost"),
        ("localhost:5000/a/b/", "localhost:5000"),
        ("wheelpipe/", None),
        ("team/sub/", None),
        ("", None),
        ("registry.example.com", None),  # no slash: that is an image name, not a registry
    ],
)
def test_the_registry_of_a_prefix_is_read_as_docker_reads_it(prefix: str, registry: str | None) -> None:
    assert images.registry_of(prefix) == registry


def test_repository_of_a_tag_keeps_the_registry_port() -> None:
    assert images.repository_of("127.0.0.1:5000/team/order:0.1.0") == "127.0.0.1:5000/team/order"
    assert images.repository_of("127.0.0.1:5000/team/order") == "127.0.0.1:5000/team/order"


@pytest.mark.parametrize("prefix", [None, "team/"])
def test_push_without_a_registry_in_the_prefix_is_refused_before_anything_is_built(repo_copy: Path, prefix: str | None) -> None:
    # No wheelhouse and a base image that does not exist: any build step would fail differently.
    args = ["image", "--service", "order", "--push", "--base-image", "no-such/base:never"]
    if prefix is not None:
        args += ["--prefix", prefix]
    result = invoke(repo_copy, *args, check=False)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stdout + result.stderr
    assert "--push needs a registry in the image prefix" in lines[0]
    assert repr(prefix if prefix is not None else "wheelpipe/") in lines[0]
    assert "==>" not in result.stderr  # no step started
    assert not (repo_copy / "wheelhouse").exists()


@pytest.mark.docker
@pytest.mark.slow
def test_push_then_pull_by_the_same_digest_and_the_pulled_image_serves(built_repo: Path, registry: Registry, docker_base_image: str) -> None:
    tag = f"{registry.prefix}order:{VERSION}"
    repository = f"{registry.prefix}order"
    container = None
    try:
        pushed = invoke(built_repo, "image", "--service", "order", "--push", "--prefix", registry.prefix, "--base-image", docker_base_image)
        found = re.search(rf"^{re.escape(repository)}@(sha256:[0-9a-f]{{64}})$", pushed.stdout, re.MULTILINE)
        assert found, pushed.stdout + pushed.stderr
        digest = found.group(1)
        assert f"{repository}@{digest}" in repo_digests(tag)

        # The registry itself serves that manifest under the version tag.
        status, headers, _ = http_get(
            f"http://{registry.host}/v2/{NAMESPACE}/order/manifests/{VERSION}", headers={"Accept": MANIFEST_TYPES}
        )
        assert status == 200
        assert {k.lower(): v for k, v in headers.items()}["docker-content-digest"] == digest

        # Only this tag goes; the image may live on under other tags (other tests' builds).
        docker("rmi", tag)
        assert not image_exists(tag)
        docker("pull", tag)
        assert f"{repository}@{digest}" in repo_digests(tag)

        port = free_port()
        container = docker("run", "-d", "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{port}:8001", tag).stdout.strip()
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while True:
            try:
                status, _, body = http_get(f"http://127.0.0.1:{port}/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = docker("logs", container, check=False)
                pytest.fail(f"/healthz of {tag} never answered 200: {logs.stdout}{logs.stderr}")
            time.sleep(0.3)
        assert json.loads(body) == {"status": "ok"}
    finally:
        if container:
            docker("rm", "-f", container, check=False)
        docker("rmi", tag, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_a_push_that_fails_is_one_line_naming_the_tag_and_the_registry(built_repo: Path, docker_base_image: str) -> None:
    closed = free_port()  # nothing listens there
    prefix = f"127.0.0.1:{closed}/{NAMESPACE}/"
    tag = f"{prefix}order:{VERSION}"
    try:
        result = invoke(built_repo, "image", "--service", "order", "--push", "--prefix", prefix, "--base-image", docker_base_image, check=False)
        assert result.returncode != 0
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
        assert len(lines) == 1, result.stdout + result.stderr
        assert tag in lines[0] and f"registry 127.0.0.1:{closed}" in lines[0]
    finally:
        docker("rmi", tag, check=False)
