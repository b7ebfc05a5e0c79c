"""Services as their team wrote them (tests/packages/team_services): no wheelpipe runtime in any
package, a directory name Docker refuses, gunicorn of a dependency serving the app's import path
on a health path of its own, `python -m` for a stdlib-served app on its own port variable, and a
worker whose command and health command are modules. Each image is built unedited, starts as a
restricted pod would and is healthy; each way a team (or a careless edit) can break what the
image runs is one line before the image is tagged or while it is verified.

The Docker cases tag under a prefix unique to the run and remove every image they create
(test_images.Ledger).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import ROOT, commit_all, copy_repository, invoke
from test_images import Ledger, docker, inspect_image, last_line

from wheelpipe import launch, load_repository
from wheelpipe.model import HttpService, WorkerService

FIXTURE = ROOT / "tests" / "packages" / "team_services"
ORDERS = "order-manager"  # services/OrderManager: its distribution's name stands in


def team_copy(destination: Path) -> Path:
    return copy_repository(destination, FIXTURE)


def edit(repository: Path, name: str, old: str, new: str) -> None:
    path = repository / name
    text = path.read_text()
    assert old in text, f"{name} no longer holds {old!r}"
    path.write_text(text.replace(old, new))


# --- the model: names and how each image runs its service (no Docker) ---------------------


def test_the_team_s_services_are_named_and_run_as_declared_without_any_wheelpipe_runtime(tmp_path: Path) -> None:
    repo = load_repository(team_copy(tmp_path / "team"))

    assert list(repo.services) == ["mailer", ORDERS, "stock"]
    assert repo.services[ORDERS].directory == "services/OrderManager"
    assert repo.notes == [
        "services/OrderManager: service 'order-manager', its distribution name: its directory's name 'OrderManager' is not a Docker repository name "
        "(lowercase letters and digits, separated by '.', '_', '__' or dashes); [tool.wheelpipe.service] name = \"...\" chooses another"
    ]
    assert repo.lock_path(ORDERS).name == "order-manager.txt"
    assert repo.services[ORDERS].service == HttpService(("gunicorn", "--workers", "1", "--access-logfile", "-", "order_manager.app:create_app()"), 8000, "PORT", "/status")
    assert repo.services["stock"].service == HttpService(("python", "-m", "stock"), 5000, "STOCK_PORT")
    assert repo.services["mailer"].service == WorkerService(("python", "-m", "mailer"), ("python", "-m", "mailer.health"))
    assert not any(name.startswith("service-runtime") for package in repo.packages.values() for name in (package.name, *package.internal))
    orders = repo.services[ORDERS].service
    assert orders is not None  # the HttpService compared above
    assert launch.app_references(orders) == ["order_manager.app:create_app()"]


# --- images: built unedited, healthy, each fault one line ----------------------------------


@pytest.fixture(scope="module")
def ledger(docker_base_image: str) -> Iterator[Ledger]:
    book = Ledger()
    yield book
    book.clean()


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, ledger: Ledger, docker_base_image: str) -> Path:
    """The team's monorepo, its wheelhouse built and every image built and tagged once."""
    repository = team_copy(tmp_path_factory.mktemp("team") / "monorepo")
    invoke(repository, "build-wheels")
    result = invoke(repository, "image", "--all", "--verbose", "--prefix", ledger.prefix, "--base-image", docker_base_image, check=False)
    ledger.record(result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return repository


def tag(ledger: Ledger, repository: Path, service: str) -> str:
    return f"{ledger.prefix}{service}:{load_repository(repository).services[service].version}"


def image_of(repository: Path, ledger: Ledger, base: str, service: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = invoke(repository, "image", "--service", service, "--verbose", "--prefix", ledger.prefix, "--base-image", base, *args, check=False)
    ledger.record(result.stderr)
    assert not check or result.returncode == 0, result.stderr[-3000:]
    return result


def verify(repository: Path, ledger: Ledger, base: str, service: str, *args: str) -> subprocess.CompletedProcess[str]:
    return invoke(repository, "verify-image", "--service", service, "--prefix", ledger.prefix, "--base-image", base, *args, check=False)


def started_container(image: str, *args: str) -> str:
    return docker("run", "--detach", "--read-only", "--tmpfs", "/tmp", "--label", "wheelpipe.test=team", *args, image).stdout.strip()


def wait_healthy(container: str, timeout: float = 40.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()
        if status in ("healthy", "unhealthy") or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize(
    ("service", "says"),
    [
        (ORDERS, f"{ORDERS}: started, and GET /status on port 8000 answered from inside and outside the container after "),
        ("stock", "stock: started, and GET /healthz on port 5000 answered from inside and outside the container after "),
        ("mailer", "mailer: started, and its health command passed after "),
    ],
)
def test_each_image_runs_its_service_as_the_team_declared_it_and_verify_image_starts_it_healthy(team: Path, ledger: Ledger, docker_base_image: str, service: str, says: str) -> None:
    image = tag(ledger, team, service)
    config = inspect_image(image)["Config"]
    assert config["Entrypoint"] == ["service"]
    assert config["Healthcheck"]["Test"] == ["CMD", "service-health"]
    settings = load_repository(team).services[service].service
    assert settings is not None  # each of the team's services declares how it runs
    for name, value in launch.environment(settings).items():
        assert f"{name}={value}" in config["Env"]

    result = verify(team, ledger, docker_base_image, service)

    assert result.returncode == 0, result.stderr
    assert last_line(result.stdout).startswith(says), result.stdout
    # The app was started once, by its own command: no wheelpipe runtime in the venv.
    listed = docker("run", "--rm", "--entrypoint", "ls", image, "/srv/venv/lib/python3.11/site-packages").stdout.split()
    assert not [name for name in listed if "service_runtime" in name]


@pytest.mark.docker
@pytest.mark.slow
def test_gunicorn_s_image_is_healthy_to_docker_and_serves_the_app_on_the_declared_port(team: Path, ledger: Ledger) -> None:
    container = started_container(tag(ledger, team, ORDERS))
    try:
        assert wait_healthy(container) == "healthy", docker("logs", container).stderr
        address = docker("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container).stdout.strip()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{address}:8000/orders/1234", timeout=10) as response:
            assert json.loads(response.read()) == {"total": "12.34"}
    finally:
        docker("rm", "--force", container, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_the_port_variable_set_at_run_time_moves_the_app_and_its_health_check_together(team: Path, ledger: Ledger) -> None:
    container = started_container(tag(ledger, team, "stock"), "--env", "STOCK_PORT=5099")
    try:
        deadline = time.monotonic() + 20
        while (probe := docker("exec", container, "service-health", check=False)).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert probe.returncode == 0, probe.stderr
        # Nothing answers on the image's default port: the probe followed the variable.
        default = docker("exec", "--env", "STOCK_PORT=5000", container, "service-health", check=False)
        assert default.returncode == 1
        assert default.stderr.strip().startswith("health probe: GET http://127.0.0.1:5000/healthz failed ("), default.stderr
    finally:
        docker("rm", "--force", container, check=False)


# What a team (or a careless edit) can do to what the image runs, and the one line it gives.
BUILD_FAULTS = {
    "a module deep in the package imports what its dependency removed": (
        ORDERS,
        ("services/OrderManager/order_manager/views/legacy.py", None, "from werkzeug.urls import url_quote\n"),
        "importing order_manager.views.legacy (from order-manager 1.2.0) failed: ImportError: cannot import name 'url_quote' from 'werkzeug.urls'",
    ),
    "the command runs a server that is not in the closure": (
        ORDERS,
        ("services/OrderManager/pyproject.toml", "command = 'gunicorn --workers 1", "command = 'uvicorn --workers 1"),
        "the command runs 'uvicorn', which is not a console script in /srv/venv/bin (the console scripts of the service's closure: ",
    ),
    "the command serves an object the app does not have": (
        ORDERS,
        ("services/OrderManager/pyproject.toml", "order_manager.app:create_app()", "order_manager.app:make_app()"),
        "importing order_manager.app:make_app(), which the service's command serves failed: AttributeError: module 'order_manager.app' has no attribute 'make_app'",
    ),
    "python -m of a module that does not exist": (
        "stock",
        ("services/stock/pyproject.toml", 'command = "python -m stock"', 'command = "python -m stock.server"'),
        "finding stock.server, which the service's command runs with python -m failed: ModuleNotFoundError: No module named 'stock.server'",
    ),
    "an entry point the package declares does not load": (
        "stock",
        ("services/stock/pyproject.toml", "[tool.hatch.build.targets.wheel]", '[project.scripts]\nstock-admin = "stock.admin:main"\n\n[tool.hatch.build.targets.wheel]'),
        "loading the entry point stock-admin (stock.admin:main, console_scripts of stock 0.4.0) failed: ModuleNotFoundError: No module named 'stock.admin'",
    ),
}


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("case", list(BUILD_FAULTS))
def test_what_the_image_would_run_that_cannot_start_is_one_line_and_the_tag_stays(team: Path, ledger: Ledger, docker_base_image: str, tmp_path: Path, case: str) -> None:
    service, (name, old, new), says = BUILD_FAULTS[case]
    repository = Path(shutil.copytree(team, tmp_path / "monorepo", symlinks=True))
    before = docker("image", "inspect", "--format", "{{.Id}}", tag(ledger, team, service)).stdout.strip()
    if old is None:
        (repository / name).write_text(new)
    else:
        edit(repository, name, old, new)
    commit_all(repository, case)

    result = image_of(repository, ledger, docker_base_image, service)

    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert last_line(result.stderr).startswith(f"error: building the image of {service} failed: {says}"), last_line(result.stderr)
    assert docker("image", "inspect", "--format", "{{.Id}}", tag(ledger, team, service)).stdout.strip() == before


@pytest.mark.network
def test_the_offline_install_check_imports_every_module_not_only_the_top_level_ones(team: Path, tmp_path: Path) -> None:
    repository = Path(shutil.copytree(team, tmp_path / "monorepo", symlinks=True))
    (repository / "services/OrderManager/order_manager/views/legacy.py").write_text("from werkzeug.urls import url_quote\n")
    commit_all(repository, "a module deep in the package that Werkzeug 3 breaks")
    invoke(repository, "build-wheels")

    result = invoke(repository, "verify-wheelhouse", "--install", check=False)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith(
        f"error: {ORDERS}: importing order_manager.views.legacy (from order-manager 1.2.0) failed: ImportError: cannot import name 'url_quote' from 'werkzeug.urls'"
    ), result.stderr


# verify-image's --start-timeout in these cases. None waits it out: each ends as soon as the
# container has exited, passed its check, or answered the health path with a 404 (which no
# wait turns into a pass). The 404 needs the app up before the deadline: ten times the few
# seconds a start takes on a busy machine, not a race with it.
START_TIMEOUT = "20"
# Images that build (everything imports) but do not serve as declared.
START_FAULTS = {
    "the app listens on the loopback address only": (
        "stock",
        ("services/stock/src/stock/__main__.py", 'make_server("0.0.0.0"', 'make_server("127.0.0.1"'),
        ("stock: the health check passes inside the container, but GET http://", ":5000/healthz failed (", "from outside it: the service must listen on every address (0.0.0.0), not 127.0.0.1 only, on port 5000 (the value of STOCK_PORT)"),
    ),
    "the health path is not the app's": (
        ORDERS,
        ("services/OrderManager/pyproject.toml", 'health-path = "/status"', 'health-path = "/healthz"'),
        (f"{ORDERS}: the health check failed, and waiting will not make it pass (health probe: GET http://127.0.0.1:8000/healthz answered 404): is health-path '/healthz' a path the app serves?",),
    ),
    "the app exits as it starts": (
        "stock",
        ("services/stock/src/stock/__main__.py", 'int(os.environ.get("STOCK_PORT", "5000"))', 'int(os.environ["STOCK_LISTEN"])'),
        ("stock: the container exited with status 1 before its health check passed; its log ends: KeyError: 'STOCK_LISTEN'",),
    ),
}


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("case", list(START_FAULTS))
def test_an_image_that_builds_but_does_not_serve_as_declared_fails_verify_image_in_one_line(team: Path, ledger: Ledger, docker_base_image: str, tmp_path: Path, case: str) -> None:
    service, (name, old, new), says = START_FAULTS[case]
    repository = Path(shutil.copytree(team, tmp_path / "monorepo", symlinks=True))
    edit(repository, name, old, new)
    commit_all(repository, case)
    image_of(repository, ledger, docker_base_image, service, check=True)

    result = verify(repository, ledger, docker_base_image, service, "--start-timeout", START_TIMEOUT)

    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line = last_line(result.stderr)
    assert line.startswith(f"error: {says[0]}"), line
    assert all(part in line for part in says[1:]), line
    # The started container is removed, whatever the outcome.
    assert not docker("ps", "-aq", "--filter", f"ancestor={tag(ledger, repository, service)}").stdout.split()


def test_a_start_timeout_that_is_not_a_number_of_seconds_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    repository = team_copy(tmp_path / "team")
    for value in ("soon", "0", "-3", "1e9"):
        result = invoke(repository, "verify-image", "--service", "stock", "--start-timeout", value, check=False, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert last_line(result.stderr) == f"error: invoke verify-image --start-timeout: expected a number of seconds (above 0, below 3600), found '{value}'"
