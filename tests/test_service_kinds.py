"""Service kinds: [tool.wheelpipe.service] is optional until an image is built, declares an http
service or a worker, and every image (and the offline install check) imports what the service
ships, so an install that cannot run is never tagged or released.

The Docker cases tag under a prefix unique to the run and remove every image they create
(test_images.Ledger).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from monorepo import ROOT, TARGET_TABLE, commit_all, invoke
from test_images import Ledger, docker, image_args, inspect_image, last_line

from wheelpipe import compose, installcheck, launch, load_repository
from wheelpipe.docker import Docker
from wheelpipe.errors import RepositoryError
from wheelpipe.image.recipe import cut_recipe
from wheelpipe.image.record import shared_arguments
from wheelpipe.model import HttpService, ServiceSettings, WorkerService
from wheelpipe.resources import service_dockerfile
from wheelpipe.wheelhouse import open_wheelhouse

WORKER = "pricing-audit"  # the demo's worker: services/pricing-audit (discount-audit)
WORKER_PYPROJECT = f"services/{WORKER}/pyproject.toml"
LEAKY = "leaky"  # tests/packages/undeclared_import, copied in as services/leaky
UNDECLARED = "importing leaky_worker (from leaky-worker 0.1.0) failed: ModuleNotFoundError: No module named 'requests'"



def service_root(tmp_path: Path, table: str, scripts: tuple[str, ...] = ("api-server",)) -> Path:
    """A monorepo of one service, services/api, whose pyproject.toml ends with `table`."""
    root = tmp_path / "repo"
    (root / "services" / "api").mkdir(parents=True)
    (root / "pyproject.toml").write_text(TARGET_TABLE)
    listed = "".join(f'{script} = "api:main"\n' for script in scripts)
    (root / "services/api/pyproject.toml").write_text(f'[project]\nname = "api"\nversion = "0.1.0"\ndependencies = []\n\n[project.scripts]\n{listed}\n{table}')
    return root


# --- the table: kinds, inference, and one line per bad value -----------------------------


@pytest.mark.parametrize(
    ("table", "scripts", "expected"),
    [
        ('[tool.wheelpipe.service]\nport-env = "API_PORT"\ndefault-port = 8080\n', ("api-server",), HttpService(("api-server",), 8080, "API_PORT")),
        ('[tool.wheelpipe.service]\nport = 8080\n', ("api-server",), HttpService(("api-server",), 8080, "PORT", "/healthz")),
        (
            '[tool.wheelpipe.service]\ncommand = \'gunicorn --workers 2 "api.app:create_app()"\'\nport = 8000\nhealth-path = "/status?deep=1"\n',
            ("api-server",),
            HttpService(("gunicorn", "--workers", "2", "api.app:create_app()"), 8000, "PORT", "/status?deep=1"),
        ),
        (
            '[tool.wheelpipe.service]\ncommand = ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "{port}"]\nport = 8000\nport-env = "UVICORN_PORT"\n',
            ("api-server",),
            HttpService(("uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "{port}"), 8000, "UVICORN_PORT"),
        ),
        ('[tool.wheelpipe.service]\ncommand = "python -m api"\nport = 5000\n', (), HttpService(("python", "-m", "api"), 5000)),
        ('[tool.wheelpipe.service]\nkind = "worker"\n', ("api-server",), WorkerService(("api-server",))),
        ('[tool.wheelpipe.service]\nkind = "worker"\ncommand = "b"\nhealth-command = ["a", "--probe", "x y"]\n', ("a", "b"), WorkerService(("b",), ("a", "--probe", "x y"))),
        ('[tool.wheelpipe.service]\nkind = "worker"\ncommand = "python3 -m api.worker --once"\nhealth-command = "python -m api.health"\n', (), WorkerService(("python3", "-m", "api.worker", "--once"), ("python", "-m", "api.health"))),
        ("", ("a", "b"), None),
    ],
    ids=[
        "http-older-key-names",
        "http-defaults",
        "gunicorn-of-a-dependency-string-split-as-a-shell-would",
        "uvicorn-with-the-port-placeholder",
        "python-m-without-console-scripts",
        "worker-command-inferred",
        "worker-with-health-command",
        "worker-python-m-commands",
        "no-table",
    ],
)
def test_the_service_table_declares_an_http_service_or_a_worker_and_is_optional(tmp_path: Path, table: str, scripts: tuple[str, ...], expected: ServiceSettings | None) -> None:
    assert load_repository(service_root(tmp_path, table, scripts)).services["api"].service == expected


WHERE = "services/api/pyproject.toml: [tool.wheelpipe.service]"
PORT_MESSAGE = f'{WHERE} port must be the port the service listens on (1-65535) for kind "http", found {{}}'
COMMAND_EXAMPLE = 'e.g. "api-server", ["uvicorn", "my_app.main:app", "--host", "0.0.0.0", "--port", "{port}"] or "python -m my_app"'
BAD_TABLES = {
    "unknown kind": ('kind = "cron"', (), f"{WHERE} kind must be \"http\" or \"worker\", found 'cron'"),
    "port-env on a worker": ('kind = "worker"\nport-env = "API_PORT"', (), f'{WHERE} port-env is for kind "http"; a worker listens on no port (remove it, or set kind = "http")'),
    "default-port on a worker": ('kind = "worker"\ndefault-port = 8080', (), f'{WHERE} default-port is for kind "http"; a worker listens on no port (remove it, or set kind = "http")'),
    "health-path on a worker": ('kind = "worker"\nhealth-path = "/healthz"', (), f'{WHERE} health-path is for kind "http"; a worker listens on no port (remove it, or set kind = "http")'),
    "http without a port": ('kind = "http"', (), PORT_MESSAGE.format("None")),
    "port not an integer": ('port-env = "API_PORT"\ndefault-port = "8080"', (), PORT_MESSAGE.format("'8080'")),
    "port out of range": ("port = 65536", (), PORT_MESSAGE.format("65536")),
    "port a boolean": ("port = true", (), PORT_MESSAGE.format("True")),
    "both port names": ("port = 8080\ndefault-port = 8081", (), f"{WHERE} sets both port and default-port (its older name): keep port"),
    "port-env not a variable name": ('port = 8080\nport-env = "API PORT"', (), f"{WHERE} port-env must be the name of the environment variable the service reads its port from (letters, digits, '_'), found 'API PORT'"),
    "health-path not a path": ('port = 8080\nhealth-path = "healthz"', (), f"{WHERE} health-path must be a URL path starting with '/' (no spaces, quotes or '#'), e.g. \"/healthz\", found 'healthz'"),
    "health-path with a space": ('port = 8080\nhealth-path = "/health z"', (), f"{WHERE} health-path must be a URL path starting with '/' (no spaces, quotes or '#'), e.g. \"/healthz\", found '/health z'"),
    "health command on http": ('port = 8080\nhealth-command = ["api-server"]', (), f"{WHERE} health-command is for kind \"worker\"; an http service's health check is a GET of its health-path (default /healthz) on its port"),
    "health command a path": ('kind = "worker"\nhealth-command = ["/usr/bin/curl", "-f", "localhost"]', (), f"{WHERE} health-command must start with the name of a console script in the service's venv (not a path; no shell), e.g. [\"api-server\", \"healthcheck\"]; found ['/usr/bin/curl', '-f', 'localhost']"),
    "health command empty": ('kind = "worker"\nhealth-command = []', (), f"{WHERE} health-command must be a console script and its arguments, as a string or a list of words (e.g. [\"api-server\", \"healthcheck\"]); found []"),
    "a misspelt key": ('kind = "worker"\nhealth_command = ["api-server"]', (), f"{WHERE} has no key 'health_command' (known: name, kind, command, port, default-port, port-env, health-path, resources, health-command)"),
    "no script to infer the command from": ('kind = "worker"', None, f"{WHERE} command is not set and [project.scripts] declares none to infer it from"),
    "several scripts to infer the command from": ('kind = "worker"', ("api-server", "api-migrate"), f"{WHERE} command is not set and [project.scripts] declares several (api-server, api-migrate): set command to one of them"),
    "command unbalanced quotes": ('kind = "worker"\ncommand = "api-server \'oops"', (), f"{WHERE} command \"api-server 'oops\" cannot be split into words (No closing quotation); write it as a list of words"),
    "command python without -m": ('kind = "worker"\ncommand = ["python", "worker.py"]', (), f"{WHERE} command runs the venv's python, which only `python -m <module>` may do (no script files, no -c); found ['python', 'worker.py']"),
    "command python -c": ('kind = "worker"\ncommand = "python3 -c \'import api\'"', (), f"{WHERE} command runs the venv's python3, which only `python3 -m <module>` may do (no script files, no -c); found \"python3 -c 'import api'\""),
    "command a path": ('kind = "worker"\ncommand = "./bin/worker"', (), f"{WHERE} command must start with the name of a console script in the service's venv (not a path; no shell), {COMMAND_EXAMPLE}; found './bin/worker'"),
    "command with a line break": ('kind = "worker"\ncommand = ["api-server", "a\\nb"]', (), f"{WHERE} command must be a console script and its arguments, as a string or a list of words ({COMMAND_EXAMPLE}); found ['api-server', 'a\\nb']"),
    "port placeholder in a worker": ('kind = "worker"\ncommand = ["api-server", "--port", "{port}"]', (), f"{WHERE} command ['api-server', '--port', '{{port}}'] holds {{port}}, but a worker has no port"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_a_bad_service_table_is_one_line_naming_the_file_and_key(tmp_path: Path, case: str) -> None:
    table, scripts, expected = BAD_TABLES[case]
    root = service_root(tmp_path, f"[tool.wheelpipe.service]\n{table}\n", ("api-server",) if scripts == () else scripts or ())
    with pytest.raises(RepositoryError) as raised:
        load_repository(root)
    assert str(raised.value) == expected


@pytest.mark.network
def test_a_service_without_the_table_locks_and_builds_but_image_and_up_name_what_is_missing(built_copy: Path) -> None:
    (built_copy / compose.COMPOSE_FILE).unlink(missing_ok=True)  # another test's `invoke up` in the session's copy
    pyproject = built_copy / WORKER_PYPROJECT
    text = pyproject.read_text()
    table = text[text.index("[tool.wheelpipe.service]") : text.index("[tool.wheelpipe.sources]")]
    pyproject.write_text(text.replace(table, ""))
    commit_all(built_copy, "the worker declares no service table")

    assert invoke(built_copy, "lock", "--check").returncode == 0
    assert invoke(built_copy, "build-wheels", "--service", WORKER).returncode == 0
    missing = (
        f'error: {WORKER_PYPROJECT}: [tool.wheelpipe.service] is needed {{}}: kind = "http" (with port; port-env, health-path and command optional) '
        'or kind = "worker" (command: its console script when it has one)'
    )
    # Refused before the engine or the base image is looked at: no Docker needed to say so.
    env = {"INVOKE_IMAGE_PREFIX": "wheelpipe-test-never/", "DOCKER_HOST": "unix:///nonexistent.sock"}
    for args, purpose in ((("image", "--service", WORKER), "to build an image"), (("image", "--all"), "to build an image"), (("up",), "to build an image")):
        result = invoke(built_copy, *args, check=False, env=env)
        assert (result.returncode, last_line(result.stderr)) == (1, missing.format(purpose)), result.stderr
        assert "==> building" not in result.stderr
    assert not (built_copy / compose.COMPOSE_FILE).exists()


# --- what the image build and compose are given, by kind ---------------------------------


def test_each_kind_gets_its_runtime_stage_launch_files_and_compose_entry(tmp_path: Path) -> None:
    http = HttpService(("uvicorn", "api.main:app", "--port", "{port}", "--bind=0.0.0.0:{port}"), 8080, "API_PORT", "/status")
    probed = WorkerService(("audit",), ("audit", "health check"))
    plain = WorkerService(("python", "-m", "audit.worker"))
    assert shared_arguments(http) == {"SERVICE_RUNTIME": "http", "DEFAULT_PORT": "8080"}
    assert shared_arguments(probed) == {"SERVICE_RUNTIME": "worker-health"}
    assert shared_arguments(plain) == {"SERVICE_RUNTIME": "worker"}
    served = launch.launch(http)
    assert served.service_env == (
        "SERVICE_KIND=http\nSERVICE_PROGRAM=uvicorn\nSERVICE_COMMAND='uvicorn api.main:app --port '\"'\"'{port}'\"'\"' '\"'\"'--bind=0.0.0.0:{port}'\"'\"''\n"
        "SERVICE_REFERENCES=api.main:app\nSERVICE_PORT=8080\n"
    )
    # The program by its path in the venv; {port} is the port variable's value when it runs.
    assert served.entrypoint.splitlines()[-1] == 'exec /srv/venv/bin/uvicorn api.main:app --port "${API_PORT}" --bind=0.0.0.0:"${API_PORT}" "$@"'
    assert served.health is not None
    assert served.health.splitlines()[-1] == "exec /srv/venv/bin/python -I -B /srv/healthprobe.py API_PORT 8080 /status"
    assert launch.environment(http) == {"API_PORT": "8080"}
    # The health command is one shell-quoted word list, quoted again as the variable's value.
    worker = launch.launch(probed)
    assert worker.service_env == (
        "SERVICE_KIND=worker\nSERVICE_PROGRAM=audit\nSERVICE_COMMAND=audit\nSERVICE_REFERENCES=''\n"
        "HEALTH_PROGRAM=audit\nHEALTH_COMMAND='audit '\"'\"'health check'\"'\"''\n"
    )
    assert worker.health is not None
    assert worker.health.splitlines()[-1] == "exec /srv/venv/bin/audit 'health check'"
    assert launch.launch(plain).health is None
    assert launch.launch(plain).entrypoint.splitlines()[-1] == 'exec /srv/venv/bin/python -m audit.worker "$@"'
    assert launch.app_references(plain) == [] and launch.environment(plain) == {}
    # A worker has no port; its health check is its command's, or none at all.
    entry = compose._compose_service("x/audit:1", probed)
    assert "ports" not in entry and "environment" not in entry
    assert entry["healthcheck"]["test"] == ["CMD", "service-health"]
    assert compose._compose_service("x/audit:1", plain)["healthcheck"] == {"disable": True}
    # Every stage up to runtime-deps is shared; only those the service's stages use get a stand-in.
    recipe = cut_recipe(service_dockerfile().read_text())
    assert recipe is not None
    assert recipe.shared_stages == ("deps", "runtime-deps")
    assert "FROM runtime-${SERVICE_RUNTIME} AS runtime-deps" in recipe.shared


# --- images of workers, and the import check (Docker) ------------------------------------


@pytest.fixture(scope="module")
def ledger(docker_base_image: str) -> Iterator[Ledger]:
    book = Ledger()
    yield book
    book.clean()


Found = TypeVar("Found")


def wait_for(condition: Callable[[], Found], timeout: float, what: str) -> Found:
    """The condition's first truthy result, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s")
        time.sleep(0.5)
    return found


def rounds(container: str) -> list[str]:
    return [line for line in docker("logs", container).stdout.splitlines() if line.startswith("discount-audit: round ")]


@pytest.mark.docker
def test_a_worker_image_stays_up_healthy_by_its_health_command_logs_its_rounds_and_stops_cleanly_on_sigterm(built_repo: Path, docker_base_image: str, ledger: Ledger) -> None:
    ledger.image(built_repo, WORKER, *image_args(ledger, docker_base_image))
    config = inspect_image(ledger.tag(WORKER))["Config"]
    assert config["Entrypoint"] == ["service"]
    assert config["Healthcheck"]["Test"] == ["CMD", "service-health"]
    assert not config.get("ExposedPorts")
    container = docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp", "--label", ledger.label, "-e", "DISCOUNT_AUDIT_INTERVAL=1", ledger.tag(WORKER)
    ).stdout.strip()
    try:
        wait_for(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip() == "healthy", 40, "the worker never became healthy")
        # The truthy result is the list of rounds, never False: mypy sees `bool | list[str]`.
        assert len(wait_for(lambda: len(rounds(container)) >= 3 and rounds(container), 20, "the worker logged no 3 rounds")) >= 3  # type: ignore[arg-type]
        assert all(re.fullmatch(r"discount-audit: round \d+: ok: 1000 discounts, mean [\d.]+ %, \d+ of 21 values unseen", line) for line in rounds(container))
        begin = time.monotonic()
        docker("stop", container, timeout=60)
        took = time.monotonic() - begin
        assert docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "0"
        assert took < 5, f"docker stop took {took:.1f} s: the worker ignored SIGTERM and was killed"
        assert docker("logs", container).stdout.splitlines()[-1].startswith("discount-audit: stopping after ")
    finally:
        docker("rm", "-f", container, check=False)


@pytest.mark.docker
def test_a_worker_without_a_health_command_has_no_health_check_and_its_process_is_its_health(built_repo: Path, docker_base_image: str, ledger: Ledger, tmp_path: Path) -> None:
    repository = Path(shutil.copytree(built_repo, tmp_path / "monorepo", symlinks=True))
    pyproject = repository / WORKER_PYPROJECT
    pyproject.write_text(re.sub(r"(?m)^health-command = .*\n", "", pyproject.read_text()))
    commit_all(repository, "the worker declares no health command")
    sub = "no-health/"
    ledger.image(repository, WORKER, *image_args(ledger, docker_base_image, sub))
    assert inspect_image(ledger.tag(WORKER, sub))["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    container = docker("run", "-d", "--read-only", "--tmpfs", "/tmp", "--label", ledger.label, ledger.tag(WORKER, sub)).stdout.strip()
    try:
        wait_for(lambda: rounds(container), 20, "the worker logged no round")
        state = json.loads(docker("inspect", "-f", "{{json .State}}", container).stdout)
        assert state["Status"] == "running" and "Health" not in state
    finally:
        docker("rm", "-f", container, check=False)


@pytest.fixture(scope="module")
def leaky_repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's built copy plus a worker importing a package it never declares, locked
    and in the wheelhouse: everything but importing it is consistent."""
    repository = Path(shutil.copytree(built_repo, tmp_path_factory.mktemp("leaky") / "monorepo", symlinks=True))
    shutil.copytree(ROOT / "tests/packages/undeclared_import", repository / "services" / LEAKY)
    invoke(repository, "lock")
    commit_all(repository, "a worker with an undeclared import, locked")
    invoke(repository, "build-wheels")
    return repository


@pytest.mark.network
def test_the_offline_install_check_names_the_module_that_does_not_import(leaky_repo: Path) -> None:
    result = invoke(leaky_repo, "verify-wheelhouse", "--install", check=False)
    assert (result.returncode, last_line(result.stderr)) == (1, f"error: {LEAKY}: {UNDECLARED}"), result.stderr
    # The wheelhouse itself is what the locks give: only importing finds the fault.
    assert "exactly what the wheels and the locks give" in result.stdout


@pytest.mark.network
def test_a_release_whose_service_does_not_import_stops_at_the_install_gate_writing_nothing(leaky_repo: Path) -> None:
    result = invoke(leaky_repo, "release", check=False)
    assert (result.returncode, last_line(result.stderr)) == (1, f"error: {LEAKY}: {UNDECLARED}"), result.stderr
    assert "release gate: the first-party packages' tests pass" in result.stderr  # the gates before it passed
    assert not (leaky_repo / "dist").exists()


@pytest.mark.network
def test_the_offline_install_check_passes_for_the_demo_services(built_repo: Path) -> None:
    result = invoke(built_repo, "verify-wheelhouse", "--install")
    checked = [line for line in result.stdout.splitlines() if "installs offline" in line]
    assert [line.split(":")[0] for line in checked] == list(load_repository(built_repo).services)
    # Every module of the worker's first-party distributions, not only their top-level ones.
    modules = sum(1 for directory in ("services/pricing-audit/src", "shared/discount_calculator/src") for _ in (built_repo / directory).rglob("*.py"))
    assert modules == 6
    assert f"{WORKER}: wheelhouse/install/{WORKER}.txt installs offline; imported {modules} modules of discount-calculator, discount-audit; loaded 1 entry points" in checked


@pytest.mark.docker
def test_the_install_check_runs_in_the_base_image_without_network_when_the_host_is_not_the_target(leaky_repo: Path, docker_base_image: str) -> None:
    repo = load_repository(leaky_repo)
    house = open_wheelhouse(leaky_repo)
    place = installcheck.InContainer(docker_base_image, Docker())
    checked = installcheck.check_installs(repo, house, ["order", WORKER], place, repo.target)
    assert [line.split(":")[0] for line in checked] == ["order", WORKER]
    with pytest.raises(installcheck.InstallCheckError) as raised:
        installcheck.check_installs(repo, house, [LEAKY], place, repo.target)
    assert str(raised.value) == f"{LEAKY}: {UNDECLARED}"


@pytest.mark.docker
def test_an_image_whose_service_does_not_import_is_not_built_naming_the_module(leaky_repo: Path, docker_base_image: str, ledger: Ledger) -> None:
    sub = "leaky/"
    result = ledger.image(leaky_repo, LEAKY, *image_args(ledger, docker_base_image, sub), check=False)
    assert (result.returncode, last_line(result.stderr)) == (1, f"error: building the image of {LEAKY} failed: {UNDECLARED}"), result.stderr
    assert ledger.prefixed(sub) == []
    assert ledger.build_containers() == []
