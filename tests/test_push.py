"""`invoke image --push`: a service's image to a real registry on loopback, and back.

The registry is Debian's docker-registry (the CNCF distribution registry; `.ci/registry`
installs it), run by this module on a free loopback port with its storage in a temporary
directory, and stopped at the end. Docker allows plain HTTP to registries on 127.0.0.0/8.
Every tag, image reference and container this module creates is removed at the end, by name;
nothing else in the engine is touched.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from monorepo import container_registry, free_port, invoke

from wheelpipe import image as images
from wheelpipe.errors import DockerError
from wheelpipe.target import Target

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


class _LyingRegistry(BaseHTTPRequestHandler):
    """A registry that answers each GET from `served` (path -> body) and takes every PUT, keeping
    nothing: as a compromised or broken registry (or a proxy in front of one) might."""

    served: dict[str, bytes] = {}
    put: list[str] = []

    def do_GET(self) -> None:
        body = self.served.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.put.append(self.path)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lying_registry() -> Iterator[tuple[str, type[_LyingRegistry]]]:
    handler = type("Handler", (_LyingRegistry,), {"served": {}, "put": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


AARCH64 = Target(python_version="3.11", implementation="cp", abi="cp311", platform="manylinux_2_36_aarch64")
IMAGE_MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "layers": []}).encode()


def test_an_image_index_is_not_put_over_a_member_the_registry_serves_other_bytes_for(lying_registry: tuple[str, type[_LyingRegistry]]) -> None:
    host, handler = lying_registry
    claimed = f"sha256:{hashlib.sha256(IMAGE_MANIFEST).hexdigest()}"
    handler.served[f"/v2/team/svc/manifests/{claimed}"] = IMAGE_MANIFEST.replace(b"[]", b'[{"x": 1}]')
    with pytest.raises(DockerError) as raised:
        images.push_index(f"{host}/team/svc:1.0", [(AARCH64, claimed)])
    assert str(raised.value) == f"the registry {host} holds no manifest {host}/team/svc@{claimed} for linux/arm64, though its push reported it"
    assert handler.put == []


def test_an_image_index_the_registry_does_not_serve_back_as_put_is_an_error(lying_registry: tuple[str, type[_LyingRegistry]]) -> None:
    host, handler = lying_registry
    digest = f"sha256:{hashlib.sha256(IMAGE_MANIFEST).hexdigest()}"
    handler.served[f"/v2/team/svc/manifests/{digest}"] = IMAGE_MANIFEST
    handler.served["/v2/team/svc/manifests/1.0"] = b'{"schemaVersion": 2, "manifests": []}'  # not what was put
    with pytest.raises(DockerError) as raised:
        images.push_index(f"{host}/team/svc:1.0", [(AARCH64, digest)])
    message = str(raised.value)
    assert message.startswith(f"put the image index {host}/team/svc:1.0 (sha256:") and message.endswith(f"but the registry {host} serves other bytes under 1.0"), message
    assert handler.put == ["/v2/team/svc/manifests/1.0"]
