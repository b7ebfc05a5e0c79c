"""`invoke image` / `verify-image`: offline, verified, minimal runtime images of the services.

Every image this module makes is tagged under a prefix unique to the run
(`wheelpipe-test-<random>/`), and everything it creates in the engine (tags, images,
containers) is removed at the end; nothing else is touched.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from monorepo import commit_all, copy_repository, free_port, git, invoke

from wheelpipe import baseimage, load_repository
from wheelpipe import image as images
from wheelpipe.console import Reporter, reporting
from wheelpipe.docker import Docker
from wheelpipe.errors import DockerError, TargetError
from wheelpipe.image.build import STAGES_FILE, ImageBuild
from wheelpipe.image.context import label_instruction
from wheelpipe.image.recipe import dockerfile_text, recipe_path
from wheelpipe.lockfile import parse_pins
from wheelpipe.resources import service_dockerfile
from wheelpipe.target import Target
from wheelpipe.wheelhouse import open_wheelhouse

pytestmark = pytest.mark.docker

VERSION = "0.1.0"
SERVICES = {
    # service: (default port, endpoint)
    "order": (8001, "/api/order"),
    "user": (8002, "/api/user"),
}
# What `invoke image --all` builds: the http services above and the demo's worker (its image:
# tests/test_service_kinds.py).
ALL_SERVICES = sorted([*SERVICES, "pricing-audit"])
HEALTHY_TIMEOUT = 40.0


def docker(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def image_id(reference: str) -> str | None:
    found = docker("image", "inspect", "--format", "{{.Id}}", reference, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def inspect_image(reference: str) -> dict[str, Any]:
    inspected: dict[str, Any] = json.loads(docker("image", "inspect", reference).stdout)[0]
    return inspected


_STEP = re.compile(r"^\s*Step \d+/\d+ : (\w+)")
_RESULT = re.compile(r"^\s*---> ([0-9a-f]{12})\s*$")


_SERVICE_PREFIX = re.compile(r"^([a-z0-9][a-z0-9_-]*): ")


def created_images(build_output: str) -> list[str]:
    """The images a build created, read from its (legacy builder) step output.

    A step that was not `Using cache` (and is not a FROM) made the image it ends with. Reading
    them from the output, rather than diffing the engine's image list, never claims an image
    a concurrent build made. Concurrent builds (`--all`) prefix each line with the service:
    each service's lines are read on their own.
    """
    by_service: dict[str, list[str]] = {}
    for line in build_output.splitlines():
        prefix = _SERVICE_PREFIX.match(line)
        by_service.setdefault(prefix.group(1) if prefix else "", []).append(line[prefix.end() :] if prefix else line)
    return [image for lines in by_service.values() for image in _created_in_one_build(lines)]


def _created_in_one_build(build_lines: list[str]) -> list[str]:
    created = []
    instruction, cached, result = None, False, None
    for line in [*build_lines, "Step 0/0 : END"]:
        step = _STEP.match(line)
        if step:
            if instruction and instruction.upper() != "FROM" and not cached and result:
                created.append(result)
            instruction, cached, result = step.group(1), False, None
        elif "---> Using cache" in line:
            cached = True
        elif found := _RESULT.match(line):
            result = found.group(1)
    # BuildKit makes no intermediate images; it reports the one it writes.
    created += re.findall(r"writing image (sha256:[0-9a-f]{64})", "\n".join(build_lines))
    return created


class Ledger:
    """Everything this module creates in the engine, so that exactly that is removed."""

    def __init__(self) -> None:
        self.session = secrets.token_hex(4)
        self.prefix = f"wheelpipe-test-{self.session}/"
        self.label = f"wheelpipe.test.session={self.session}"
        self.images: list[str] = []

    def tag(self, service: str, sub: str = "") -> str:
        return f"{self.prefix}{sub}{service}:{VERSION}"

    def prefixed(self, sub: str = "") -> list[str]:
        listed = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        return sorted(ref for ref in listed if ref.startswith(self.prefix + sub))

    def record(self, build_output: str) -> None:
        self.images += created_images(build_output)

    def image(self, repository: Path, service: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`invoke image --verbose`, recording the images the build creates."""
        result = invoke(repository, "image", "--service", service, "--verbose", *args, check=False)
        self.record(result.stderr)
        if check and result.returncode != 0:
            pytest.fail(f"invoke image --service {service} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    @contextmanager
    def reporter(self) -> Iterator[Reporter]:
        """A verbose reporter, the current one for an API build; the images it creates are recorded."""
        stream = io.StringIO()
        try:
            with reporting(Reporter(verbose=True, stream=stream)) as reporter:
                yield reporter
        finally:
            self.record(stream.getvalue())

    def build_containers(self) -> list[str]:
        """Containers left behind by a failed build step that carries this session's marker."""
        listed = docker("ps", "-a", "--no-trunc", "--format", "{{.ID}}\t{{.Command}}").stdout.splitlines()
        return [line.split("\t")[0] for line in listed if self.session in line]

    def clean(self) -> None:
        for container in docker("ps", "-aq", "--no-trunc", "--filter", f"label={self.label}").stdout.split():
            docker("rm", "-f", container, check=False)
        for container in self.build_containers():
            docker("rm", "-f", container, check=False)
        for tag in self.prefixed():
            docker("rmi", tag, check=False)
        pending = list(reversed(self.images))  # newest first: children before their parents
        while pending:
            left = []
            for image in pending:
                tags = docker("image", "inspect", "--format", "{{len .RepoTags}}", image, check=False)
                if tags.returncode != 0:
                    continue  # gone already (removed with its child)
                if tags.stdout.strip() != "0":
                    continue  # tagged by someone else meanwhile: not ours to remove any more
                if docker("rmi", image, check=False).returncode != 0:
                    left.append(image)
            if len(left) == len(pending):
                break  # the rest has children or containers we did not make
            pending = left


@pytest.fixture(scope="module")
def ledger(docker_base_image: str) -> Iterator[Ledger]:
    book = Ledger()
    yield book
    book.clean()


@dataclass(frozen=True)
class BuiltImages:
    ids: dict[str, str]  # service -> image id
    output: str  # what `invoke image --all --verbose` printed


@pytest.fixture(scope="module")
def built_all(built_repo: Path, docker_base_image: str, ledger: Ledger) -> BuiltImages:
    """Both services' images, built at once (`invoke image --all`) from the session's built copy."""
    result = invoke(built_repo, "image", "--all", "--jobs", "2", "--verbose", "--prefix", ledger.prefix, "--base-image", docker_base_image, check=False)
    ledger.record(result.stderr)
    if result.returncode != 0:
        pytest.fail(f"invoke image --all failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    ids: dict[str, str] = {}
    for service in SERVICES:
        found = image_id(ledger.tag(service))
        assert found is not None, f"invoke image --all succeeded and {ledger.tag(service)} is not there"
        ids[service] = found
    return BuiltImages(ids, result.stderr)


@pytest.fixture(scope="module")
def built_images(built_all: BuiltImages) -> dict[str, str]:
    """service -> image id of the images built_all made."""
    return built_all.ids


def image_args(ledger: Ledger, base: str, sub: str = "") -> list[str]:
    return ["--prefix", ledger.prefix + sub, "--base-image", base]


def clone(built_repo: Path, destination: Path) -> Path:
    """A copy of the built copy, wheelhouse and git history included (the symlink is relative)."""
    shutil.copytree(built_repo, destination, symlinks=True)
    assert (destination / "wheelhouse").resolve().is_relative_to(destination)
    return destination


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------
# running the images


def http_get(container: str, port: int, path: str, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            error.close()
            pytest.fail(f"{path} answered {error.code}")
        except OSError:
            running = docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                logs = docker("logs", container, check=False)
                pytest.fail(f"{path} on port {port} never answered (running: {running}):\n{logs.stdout}{logs.stderr}")
            time.sleep(0.2)


def wait_healthy(container: str) -> float:
    started = time.monotonic()
    while True:
        status = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
        if status == "healthy":
            return time.monotonic() - started
        if status == "unhealthy" or time.monotonic() - started > HEALTHY_TIMEOUT:
            health = docker("inspect", "-f", "{{json .State.Health}}", container).stdout
            pytest.fail(f"container never became healthy (status {status!r}): {health}")
        time.sleep(0.5)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_image_serves_on_a_read_only_root_becomes_healthy_and_stops_cleanly_on_sigterm(built_images: dict[str, str], ledger: Ledger, service: str) -> None:
    default_port, endpoint = SERVICES[service]
    port = free_port()
    started = docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp", "--label", ledger.label,
        "-p", f"127.0.0.1:{port}:{default_port}", ledger.tag(service),
    )
    container = started.stdout.strip()
    try:
        assert http_get(container, port, "/healthz") == (200, {"status": "ok"})
        status, body = http_get(container, port, endpoint)
        assert status == 201
        assert body["status"] == "created"
        if service == "order":
            assert isinstance(body["discount"], int) and 0 <= body["discount"] <= 20
        wait_healthy(container)
        begin = time.monotonic()
        docker("stop", container, timeout=60)
        took = time.monotonic() - begin
        assert docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "0"
        assert took < 8, f"docker stop took {took:.1f}s: the service ignored SIGTERM and was killed"
    finally:
        docker("rm", "-f", container, check=False)


# ---------------------------------------------------------------------------
# what the images hold


_AS_APP = """
id -u | sed 's/^/uid: /'
for name in gcc cc pip pip3 uv uvx; do
    if command -v "$name" >/dev/null 2>&1; then echo "present: $name at $(command -v "$name")"; fi
done
if python3 -m pip --version >/dev/null 2>&1; then echo "present: python3 -m pip"; fi
if python3 -m uv --version >/dev/null 2>&1; then echo "present: python3 -m uv"; fi
"""
# As root, so that no directory is hidden from find.
_AS_ROOT = """
find / -xdev -name '*.whl' | sed 's/^/wheel: /'
for path in /build /build/wheels /build/uv /build/pip /build/installer /build/first-party /build/before-first-party /services /shared /src /app; do
    if [ -e "$path" ]; then echo "present: $path"; fi
done
find / -xdev \\( -name pyproject.toml -o -type d -name services -o -type d -name shared \\) \
    -not -path '/srv/venv/lib/python3*/site-packages/*' | sed 's/^/source: /'
ls /srv | sed 's/^/srv: /'
"""
# The installer's traces, as root: its binaries anywhere, its distributions' metadata, and
# what an installer may leave in the venv's dist-infos; then every bytecode file whose
# validity depends on a timestamp, not on its source's hash.
_INSTALLER_TRACES = """
find / -xdev -type f \\( -name uv -o -name uvx \\) | sed 's/^/binary: /'
find / -xdev -type d \\( -name 'uv-*.dist-info' -o -name 'uv-*.data' -o -name 'pip-*.dist-info' \\
    -o -path '*-packages/uv' -o -path '*-packages/pip' \\) | sed 's/^/distribution: /'
find /srv/venv -path '*.dist-info/*' \\( -name INSTALLER -o -name REQUESTED -o -name uv_cache.json -o -name direct_url.json \\) \\
    | sed 's/^/installer metadata: /'
ls -d /srv/venv/lib/python3*/site-packages/*.dist-info | sed 's/^/dist-info: /'
/srv/venv/bin/python -c '
import pathlib
pycs = list(pathlib.Path("/srv/venv").rglob("*.pyc"))
print("pycs:", len(pycs))
for pyc in pycs:
    if int.from_bytes(pyc.read_bytes()[4:8], "little") != 3:  # PEP 552: 3 is a checked hash
        print("timestamp pyc:", pyc)
'
"""


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_image_holds_no_compiler_no_installer_no_wheels_no_sources_and_runs_unprivileged(built_images: dict[str, str], ledger: Ledger, service: str) -> None:
    tag = ledger.tag(service)
    as_app = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c", _AS_APP).stdout.splitlines()
    as_root = docker("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh", tag, "-c", _AS_ROOT).stdout.splitlines()
    uid = [line.removeprefix("uid: ") for line in as_app if line.startswith("uid: ")]
    assert uid and uid != ["0"]
    assert [line for line in as_app if line.startswith("present")] == []
    assert [line for line in as_root if not line.startswith("srv: ")] == []
    # The venv, and the http health probe beside it (outside the venv, which holds what the wheels installed).
    assert [line for line in as_root if line.startswith("srv: ")] == ["srv: healthprobe.py", "srv: venv"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_image_config_has_healthcheck_unprivileged_user_and_oci_labels_of_the_commit(built_repo: Path, built_images: dict[str, str], ledger: Ledger, service: str) -> None:
    config = inspect_image(ledger.tag(service))["Config"]
    # The standard library's probe of the health path: the app is not started a second time.
    assert config["Healthcheck"]["Test"] == ["CMD", "service-health"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["service"]
    labels = config["Labels"]
    head = git(built_repo, "rev-parse", "HEAD").strip()
    committed = datetime.fromisoformat(git(built_repo, "log", "-1", "--format=%cI").strip()).astimezone(timezone.utc)
    assert labels["org.opencontainers.image.title"] == service
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == head
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])
    assert labels["org.opencontainers.image.created"] == committed.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_monorepo_s_own_dockerfile_replaces_the_one_wheelpipe_ships(built_repo: Path, tmp_path: Path) -> None:
    repository = clone(built_repo, tmp_path / "monorepo")
    repo = load_repository(repository)
    settings = images.ImageSettings(prefix="unused/", base="unused", docker=Docker())
    assert recipe_path(repo, settings) == service_dockerfile()
    own = repository / "dockerfiles" / "service.Dockerfile"
    own.parent.mkdir()
    own.write_text(service_dockerfile().read_text() + "# the team's own additions\n")
    assert recipe_path(repo, settings) == own
    assert dockerfile_text(repo, settings).endswith("# the team's own additions\n")


def test_label_values_reach_the_image_as_written_whatever_they_hold(ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    """The LABEL line is written out, not passed as build args: a value a Dockerfile would
    expand ($), end (") or escape (backslash) must still arrive byte for byte."""
    labels = {"org.opencontainers.image.source": 'https://host/a$HOME"b\\c${X}\\', "title": "plain"}
    (tmp_path / "Dockerfile").write_text(f"FROM {docker_base_image}\n" + label_instruction(labels))
    built = docker("build", "--force-rm", "-q", "--label", ledger.label, str(tmp_path))
    image = built.stdout.strip()
    ledger.images.append(image)
    assert {k: v for k, v in inspect_image(image)["Config"]["Labels"].items() if k in labels} == labels
    with pytest.raises(DockerError, match="holds a line break"):
        label_instruction({"title": "a\nRUN evil"})


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_image_holds_no_uv_no_installer_metadata_and_only_hash_checked_bytecode(built_repo: Path, built_images: dict[str, str], ledger: Ledger, service: str) -> None:
    traces = docker("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh", ledger.tag(service), "-c", _INSTALLER_TRACES)
    lines = traces.stdout.splitlines()
    assert [line for line in lines if not line.startswith(("dist-info: ", "pycs: "))] == [], traces.stderr
    # The check saw every distribution and the bytecode it looks at.
    assert len([line for line in lines if line.startswith("dist-info: ")]) == len(parse_pins(open_wheelhouse(built_repo).install_manifest(service, load_repository(built_repo).target)))
    (pycs,) = [int(line.removeprefix("pycs: ")) for line in lines if line.startswith("pycs: ")]
    assert pycs > 100


# ---------------------------------------------------------------------------
# verification against the install manifest


def test_verify_image_passes_on_the_built_image_and_names_every_difference_against_another_manifest(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str) -> None:
    checked = invoke(built_repo, "verify-image", "--service", "order", *image_args(ledger, docker_base_image))
    assert "exactly those of wheelhouse/install/order.txt" in checked.stderr
    with pytest.raises(DockerError) as raised:
        repo, house = load_repository(built_repo), open_wheelhouse(built_repo)
        settings = images.ImageSettings(prefix=ledger.prefix, base=docker_base_image, docker=Docker())
        # The order image checked against the user service's record: its manifest, its launch files.
        user = images.service_image(repo, settings, house, "user", images.commit_facts(repo), repo.target)
        images.verify_image(house, Docker(), ledger.tag("order"), user)
    message = str(raised.value)
    assert f"image {ledger.tag('order')} does not match wheelhouse/install/user.txt" in message
    assert f"extra order-manager=={VERSION}" in message
    assert "extra discount-calculator==" in message
    assert f"missing user-manager=={VERSION}" in message
    assert "flask" not in message and "gunicorn" not in message  # shared by both: no difference


def modified_dockerfile(repository: Path, destination: Path, edit: Callable[[str], str]) -> Path:
    text = service_dockerfile().read_text()  # the recipe wheelpipe ships
    destination.write_text(edit(text))
    return destination


def test_an_image_holding_more_than_the_lock_is_not_tagged(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    rogue = r"""
USER 0
RUN site="$(/srv/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && mkdir -p "$site/rogue-1.0.dist-info" \
    && printf 'Metadata-Version: 2.1\nName: rogue\nVersion: 1.0\n' > "$site/rogue-1.0.dist-info/METADATA"
USER 10001:10001
"""
    dockerfile = modified_dockerfile(built_repo, tmp_path / "rogue.Dockerfile", lambda text: text + rogue)
    repo = load_repository(built_repo)
    # A tag that does not exist yet stays absent; one that exists keeps its image.
    for sub, before in (("rogue/", None), ("", built_images["order"])):
        settings = images.ImageSettings(prefix=ledger.prefix + sub, base=docker_base_image, docker=Docker(), dockerfile=dockerfile)
        tag = images.image_tag(repo, settings, "order")
        assert image_id(tag) == before
        with ledger.reporter(), pytest.raises(DockerError) as raised:
            images.build_image(repo, settings, "order")
        assert "extra rogue==1.0" in str(raised.value)
        assert "does not match wheelhouse/install/order.txt" in str(raised.value)
        assert image_id(tag) == before


_SITE = r'''site="$(/srv/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"'''
_ROGUE_DIST = r"""mkdir -p /srv/venv/extra/rogue-1.0.dist-info \
    && printf 'Metadata-Version: 2.1\nName: rogue\nVersion: 1.0\n' > /srv/venv/extra/rogue-1.0.dist-info/METADATA"""


@pytest.mark.parametrize(
    ("addition", "says"),
    [
        ("ENV PYTHONPATH=/opt/extra", "the image sets PYTHONPATH=/opt/extra"),
        (f'USER 0\nRUN {_SITE} && echo /opt/extra > "$site/extra.pth"', "extra.pth puts /opt/extra on the path"),
        (
            "USER 0\nRUN sed -i 's/^include-system-site-packages = false$/include-system-site-packages = true/' /srv/venv/pyvenv.cfg",
            "/srv/venv/pyvenv.cfg includes the base image's site-packages",
        ),
        (f'USER 0\nRUN {_SITE} && {_ROGUE_DIST} && echo ../../../extra > "$site/extra.pth"', "extra rogue==1.0"),
    ],
    ids=["PYTHONPATH", "pth-outside-the-venv", "system-site-packages", "pth-inside-the-venv"],
)
def test_an_image_whose_interpreter_can_import_from_beyond_its_distributions_is_not_tagged(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path, addition: str, says: str) -> None:
    # The distributions are read from the image's files, not by its interpreter: what widens
    # that interpreter's search path is named (or, inside the venv, followed).
    # Back to the unprivileged user afterwards, as an override must to pass the recipe check.
    dockerfile = modified_dockerfile(built_repo, tmp_path / "widened.Dockerfile", lambda text: f"{text}\n{addition}\nUSER 10001:10001\n")
    repo = load_repository(built_repo)
    settings = images.ImageSettings(prefix=ledger.prefix + "widened/", base=docker_base_image, docker=Docker(), dockerfile=dockerfile)
    with ledger.reporter(), pytest.raises(DockerError) as raised:
        images.build_image(repo, settings, "order")
    assert str(raised.value).startswith("image sha256:"), str(raised.value)
    assert str(raised.value).endswith(f"does not match wheelhouse/install/order.txt: {says}"), str(raised.value)
    assert ledger.prefixed("widened/") == []


_THIRD_PARTY_INSTALL = """\
        --python /srv/venv/bin/python --offline --no-index --no-cache \\
        --require-hashes --only-binary :all: --no-deps --compile-bytecode --link-mode copy \\
        --find-links /build/wheels/third-party \\
        --requirement /build/wheels/third-party/requirements.txt
"""


def test_the_build_has_no_network_an_install_that_needs_an_index_fails_and_tags_nothing(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    def from_index(text: str) -> str:
        assert text.count(_THIRD_PARTY_INSTALL) == 1
        step = text.index(_THIRD_PARTY_INSTALL)
        run = text.rindex("RUN ", 0, step)
        head = text[run + len("RUN ") : step]
        assert head.count("env -i ") == 1
        # The session marker finds a container the failed step might leave behind; no retries,
        # so the failure comes at once.
        marked = text[:run] + f"RUN WHEELPIPE_TEST={ledger.session} " + head.replace("env -i ", "env -i UV_HTTP_RETRIES=0 ")
        index = "        --python /srv/venv/bin/python --index-url https://pypi.org/simple --no-cache --only-binary :all: --no-deps \\\n"
        return marked + index + "        --requirement /build/wheels/third-party/requirements.txt\n" + text[step + len(_THIRD_PARTY_INSTALL) :]

    dockerfile = modified_dockerfile(built_repo, tmp_path / "index.Dockerfile", from_index)
    repo = load_repository(built_repo)
    settings = images.ImageSettings(prefix=ledger.prefix, base=docker_base_image, docker=Docker(), dockerfile=dockerfile)
    with ledger.reporter() as reporter, pytest.raises(DockerError) as raised:
        images.build_image(repo, settings, "order")
    # The reason is uv's own error line, not the echo of the failed command.
    assert str(raised.value).startswith("building the image of order failed: Failed to fetch: https://pypi.org/simple/"), str(raised.value)
    assert isinstance(reporter.stream, io.StringIO)  # Ledger.reporter's
    log = reporter.stream.getvalue()
    # uv tried the index and could not even resolve its name: the build has no network.
    assert "Failed to fetch: https://pypi.org/simple/" in log, log[-3000:]
    assert re.search(r"name resolution|failed to lookup address|Network is unreachable", log), log[-3000:]
    assert image_id(ledger.tag("order")) == built_images["order"]
    assert ledger.build_containers() == [], "the failed build left its container behind"


# ---------------------------------------------------------------------------
# a tampered wheelhouse never reaches an image


def _wheel(repository: Path, which: str) -> str:
    """The file of the order image's flask wheel, or of the image installer (uv)."""
    document = json.loads((repository / "wheelhouse" / "manifest.json").read_text())
    if which == "installer":
        (installer,) = [w for w in document["wheels"] if w["origin"].get("purpose") == "installer"]
        assert installer["name"] == "uv"
        file: str = installer["file"]
        return file
    flask: str = next(w["file"] for w in document["wheels"] if w["name"] == "flask" and "order" in w["services"])
    return flask


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["flask", "installer"])
@pytest.mark.parametrize(("damage", "says"), [("flipped", "sha256 mismatch"), ("deleted", "missing")])
def test_a_tampered_or_missing_wheel_stops_invoke_image_and_the_tag_stays(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path, damage: str, says: str, which: str) -> None:
    repository = clone(built_repo, tmp_path / "monorepo")
    sub = f"tamper-{damage}-{which}/"
    docker("tag", built_images["order"], ledger.tag("order", sub))
    wheel = repository / "wheelhouse" / _wheel(repository, which)
    if damage == "flipped":
        _flip_a_byte(wheel)
    else:
        wheel.unlink()
    result = ledger.image(repository, "order", *image_args(ledger, docker_base_image, sub), check=False)
    assert result.returncode != 0
    error = last_line(result.stderr)
    assert error.startswith(f"error: wheelhouse/{wheel.name}: {says}"), result.stderr
    assert "building order" not in result.stderr and "docker build" not in result.stderr
    assert image_id(ledger.tag("order", sub)) == built_images["order"]


def test_an_installer_wheel_changed_after_the_wheelhouse_check_stops_the_build_naming_it(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    repository = clone(built_repo, tmp_path / "monorepo")
    house = open_wheelhouse(repository)  # every wheel checked against manifest.json here
    installer = house.installer(house.targets[0])
    assert installer.name == "uv"
    _flip_a_byte(house.path / installer.file)  # ... and the installer changed since
    # ... and the stages it is used in must be built again (nothing recorded of them).
    (repository / ".wheelhouse" / STAGES_FILE).unlink(missing_ok=True)
    sub = "installer-changed/"
    docker("tag", built_images["order"], ledger.tag("order", sub))
    settings = images.ImageSettings(prefix=ledger.prefix + sub, base=docker_base_image, docker=Docker())
    with ledger.reporter(), pytest.raises(DockerError) as raised:
        repo = load_repository(repository)
        order = images.service_image(repo, settings, house, "order", images.commit_facts(repo), repo.target)
        ImageBuild(settings, house, repository / ".wheelhouse", dockerfile_text(repo, settings), images.require_base(repo, settings, repo.target)).build(order)
    message = str(raised.value)
    assert message.startswith(f"building the image of order failed: installer/{installer.file} is not the wheel wheelhouse/manifest.json records"), message
    assert f"recorded {installer.sha256}" in message
    assert image_id(ledger.tag("order", sub)) == built_images["order"]


# ---------------------------------------------------------------------------
# every service at once


def test_image_all_builds_every_service_at_once_each_line_naming_its_service(built_all: BuiltImages) -> None:
    lines = [line for line in built_all.output.splitlines() if line.strip()]
    # The base and the wheelhouse are checked once, for all; then each build speaks for itself.
    assert sum("building the wheelhouse" in line for line in lines) == 1
    own = [line for line in lines if line.startswith(tuple(f"{service}: " for service in ALL_SERVICES))]
    starts = [i for i, line in enumerate(lines) if re.match(r"^[\w-]+: ==> building ", line)]
    tagged = [i for i, line in enumerate(lines) if re.match(r"^[\w-]+:     tagged ", line)]
    assert sorted(lines[i].split(":")[0] for i in starts) == ALL_SERVICES
    assert sorted(lines[i].split(":")[0] for i in tagged) == ALL_SERVICES
    # Two builds (--jobs 2) started before any was done: they ran at once.
    assert sorted(starts)[1] < min(tagged), "\n".join(own[:40])
    # Once the builds start, every line, the docker output included, is one build's and whole.
    during = lines[lines.index(own[0]) :]
    assert during == [line for line in during if line in own]
    assert all(built_all.ids.values())


def test_image_all_failing_for_one_service_names_it_and_leaves_its_tag_where_it_was(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    refuse_user = """
RUN [ ! -e /srv/venv/bin/user-manager ] || { echo "image check: refusing to build user, as the test asks" >&2; exit 1; }
"""
    dockerfile = modified_dockerfile(built_repo, tmp_path / "refuse-user.Dockerfile", lambda text: text + refuse_user)
    sub = "one-fails/"
    for service in SERVICES:
        docker("tag", built_images[service], ledger.tag(service, sub))
    settings = images.ImageSettings(prefix=ledger.prefix + sub, base=docker_base_image, docker=Docker(), dockerfile=dockerfile)
    with ledger.reporter(), pytest.raises(DockerError) as raised:
        images.build_images(load_repository(built_repo), settings, sorted(SERVICES), jobs=2)
    assert str(raised.value) == "building the image of user failed: refusing to build user, as the test asks"
    assert image_id(ledger.tag("user", sub)) == built_images["user"]
    # The other build was not stopped: its new image is tagged.
    assert image_id(ledger.tag("order", sub)) not in (None, built_images["order"])


# ---------------------------------------------------------------------------
# caching


def test_a_code_change_replaces_only_the_first_party_layer_and_an_unchanged_rebuild_is_identical(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    repository = clone(built_repo, tmp_path / "monorepo")
    sub = "layers/"
    tag = ledger.tag("order", sub)

    outputs: list[str] = []

    def build() -> dict[str, Any]:
        outputs.append(ledger.image(repository, "order", *image_args(ledger, docker_base_image, sub)).stderr)
        return inspect_image(tag)

    # Same commit, another checkout: the very same image.
    first = build()
    assert first["Id"] == built_images["order"]

    orders = repository / "services/order/src/order_manager/orders.py"
    text = orders.read_text()
    assert "import uuid\n" in text
    orders.write_text(text.replace("import uuid\n", f"import uuid  # changed by test_images ({ledger.session})\n", 1))
    commit_all(repository, "change one line of the order service")
    second = build()
    # The shared stages were recorded: one build, sent the service's own wheels only (not the
    # 18 MB installer and the third-party wheels), running none of the shared stages' steps.
    sent = re.findall(r"Sending build context to Docker daemon\s+([0-9.]+)([kMG]?B)", outputs[-1])
    assert len(sent) == 1 and sent[0][1] in ("B", "kB"), sent
    assert "COPY installer/" not in outputs[-1] and "COPY third-party/" not in outputs[-1]
    assert second["Id"] != first["Id"]
    before, after = first["RootFS"]["Layers"], second["RootFS"]["Layers"]
    assert len(after) == len(before)
    # Base, account, venv with the third-party closure: all reused; only the overlay differs.
    assert after[:-1] == before[:-1]
    assert after[-1] != before[-1]
    assert second["Config"]["Labels"]["org.opencontainers.image.revision"] == git(repository, "rev-parse", "HEAD").strip()

    # Nothing changed: the same image id.
    assert build()["Id"] == second["Id"]


@pytest.mark.parametrize("damage", ["not-json", "ids-gone", "base-changed"])
def test_a_damaged_record_of_shared_stages_builds_them_again_and_the_same_image(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path, damage: str) -> None:
    """The record is a cache: when it cannot be used the stages are built again (from the
    engine's cache), and the image is the same."""
    repository = clone(built_repo, tmp_path / "monorepo")
    record = repository / ".wheelhouse" / STAGES_FILE
    text = record.read_text()
    if damage == "not-json":
        record.write_text(text[: len(text) // 2])
    elif damage == "ids-gone":
        record.write_text(re.sub(r'"stages": \{[^}]*\}', lambda m: re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, m.group()), text))
    else:
        record.write_text(re.sub(r'"base": "sha256:[0-9a-f]{64}"', '"base": "sha256:' + "1" * 64 + '"', text))
    sub = f"record-{damage}/"
    output = ledger.image(repository, "order", *image_args(ledger, docker_base_image, sub)).stderr
    assert "COPY installer/" in output  # the shared stages were built again ...
    assert inspect_image(ledger.tag("order", sub))["Id"] == built_images["order"]  # ... to the same image
    assert json.loads(record.read_text())  # and recorded anew


def test_a_record_pointing_a_shared_stage_at_another_image_gives_an_image_that_is_not_tagged(built_repo: Path, built_images: dict[str, str], ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    """A hostile edit: the runtime stage stood in for by the bare base image. The image then
    lacks the whole third-party closure, and the verification names what is missing."""
    repository = clone(built_repo, tmp_path / "monorepo")
    record = repository / ".wheelhouse" / STAGES_FILE
    base = image_id(docker_base_image)
    record.write_text(re.sub(r'("runtime-deps": )"sha256:[0-9a-f]{64}"', lambda m: f'{m.group(1)}"{base}"', record.read_text()))
    sub = "record-hostile/"
    result = ledger.image(repository, "order", *image_args(ledger, docker_base_image, sub), check=False)
    assert result.returncode == 1
    error = last_line(result.stderr)
    assert error.startswith("error: image sha256:"), error
    assert "does not match wheelhouse/install/order.txt: missing " in error and "; missing flask==" in error, error
    assert ledger.prefixed(sub) == []


# ---------------------------------------------------------------------------
# bad input


# An unknown --service: in the fast tier, with no engine and nothing built (test_model.py).


def test_an_unreachable_engine_is_named_with_how_to_start_it(built_repo: Path, ledger: Ledger, docker_base_image: str) -> None:
    result = invoke(
        built_repo, "image", "--service", "order", *image_args(ledger, docker_base_image, "no-engine/"),
        check=False, env={"DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    assert result.returncode != 0
    error = last_line(result.stderr)
    assert error.startswith("error: cannot reach the Docker engine"), result.stderr
    assert "start it" in error and "dockerd" in error


def test_a_missing_base_image_says_to_pull_it_or_bootstrap_one(built_repo: Path, ledger: Ledger) -> None:
    missing = "wheelpipe-test/nonexistent:1"
    result = ledger.image(built_repo, "order", "--prefix", ledger.prefix + "no-base/", "--base-image", missing, check=False)
    assert result.returncode != 0
    error = last_line(result.stderr)
    assert error == (
        f"error: base image {missing} is not present: `docker pull {missing}`, or where no registry is reachable "
        "run `invoke base-image` and build with --base-image local/python:3.11-slim-bookworm"
    ), result.stderr
    assert ledger.prefixed("no-base/") == []


# ---------------------------------------------------------------------------
# the base image and the target


def test_the_base_image_matches_the_target_and_another_python_is_refused(built_repo: Path, docker_base_image: str) -> None:
    repo = load_repository(built_repo)
    found = baseimage.check_matches_target(Docker(), docker_base_image, repo.target)
    assert found["python"] == repo.target.python_version == "3.11"
    other = Target("3.12", "cp", "cp312", "manylinux_2_36_x86_64")
    with pytest.raises(TargetError) as raised:
        baseimage.check_matches_target(Docker(), docker_base_image, other)
    assert docker_base_image in str(raised.value)
    assert "3.12" in str(raised.value)


def test_invoke_image_refuses_a_base_image_that_does_not_match_the_target_before_building(tmp_path: Path, ledger: Ledger, docker_base_image: str) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    pyproject = repository / "pyproject.toml"
    text = pyproject.read_text()
    assert 'python-version = "3.11"' in text and 'abi = "cp311"' in text
    pyproject.write_text(text.replace('python-version = "3.11"', 'python-version = "3.12"').replace('abi = "cp311"', 'abi = "cp312"'))
    commit_all(repository, "target CPython 3.12")
    result = ledger.image(repository, "order", *image_args(ledger, docker_base_image, "py312/"), check=False)
    assert result.returncode != 0
    error = last_line(result.stderr)
    assert error.startswith(f"error: base image {docker_base_image} does not match the target CPython 3.12"), result.stderr
    assert "Python 3.11 (target wants 3.12)" in error
    assert "building the wheelhouse" not in result.stderr and "docker build" not in result.stderr
    assert not (repository / "wheelhouse").exists()
    assert ledger.prefixed("py312/") == []


def test_base_image_refuses_a_debian_suite_whose_python_is_not_the_target_before_bootstrapping(repo_copy: Path) -> None:
    result = invoke(repo_copy, "base-image", "--suite", "trixie", "--tag", "wheelpipe-test/never-built:1", check=False)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert "trixie ships Python 3.13" in error and "3.11" in error
    assert subprocess.run(["docker", "image", "inspect", "wheelpipe-test/never-built:1"], capture_output=True, check=False).returncode != 0
