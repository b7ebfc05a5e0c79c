"""`invoke build-wheels`: a complete, verified, incremental and atomic wheelhouse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from monorepo import Served, commit_all, copy_repository, free_port, git, install_offline, invoke

from wheelpipe import load_repository
from wheelpipe.lockfile import parse_pins
from wheelpipe.wheelhouse import verify

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

SERVICES = {
    "order": ("order-manager", "ORDER_MANAGER", "/api/order"),
    "user": ("user-manager", "USER_MANAGER", "/api/user"),
}


def manifest(repository: Path) -> dict[str, Any]:
    written: dict[str, Any] = json.loads((repository / "wheelhouse" / "manifest.json").read_text())
    return written


def wheel_hashes(repository: Path, kind: str | None = None) -> dict[str, str]:
    return {w["file"]: w["sha256"] for w in manifest(repository)["wheels"] if kind is None or w["origin"]["kind"] == kind}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_install_manifest_installs_offline_and_the_service_answers_over_http(built_repo: Path, tmp_path: Path, service: str) -> None:
    command, env_prefix, endpoint = SERVICES[service]
    installed = install_offline(built_repo, service, tmp_path / "venv")
    assert installed.returncode == 0, installed.stderr
    port = free_port()
    env = {f"{env_prefix}_PORT": str(port), f"{env_prefix}_HOST": "127.0.0.1", "WEB_CONCURRENCY": "1"}
    with Served(tmp_path / "venv" / "bin" / command, env, port) as served:
        assert served.get("/healthz") == (200, {"status": "ok"})
        status, body = served.get(endpoint)
    assert status == 201
    assert body["status"] == "created"
    if service == "order":
        assert isinstance(body["discount"], int) and 0 <= body["discount"] <= 20


def test_install_manifest_pins_every_distribution_of_the_service_to_a_wheel_in_the_wheelhouse(built_repo: Path) -> None:
    repo = load_repository(built_repo)
    house = verify((built_repo / "wheelhouse").resolve())
    for service in repo.services:
        pins = parse_pins(built_repo / "wheelhouse" / "install" / f"{service}.txt")
        locked = parse_pins(repo.lock_path(service))
        first_party = {p.name for p in repo.closure(service)}
        assert set(pins) == set(locked) | first_party
        by_hash = {e.sha256: e for e in house.entries.values()}
        for pin in pins.values():
            (digest,) = pin.hashes
            assert by_hash[digest].name == pin.name and by_hash[digest].version == pin.version
            if pin.name in locked:
                assert locked[pin.name].version == pin.version
                assert digest in locked[pin.name].hashes


def test_manifest_records_origin_and_users_of_every_wheel_and_sha256sums_verifies(built_repo: Path) -> None:
    document = manifest(built_repo)
    assert document["target"]["platform"] == "manylinux_2_36_x86_64"
    wheels = {w["name"]: w for w in document["wheels"]}
    assert wheels["discount-calculator"]["services"] == ["order", "pricing-audit"]
    assert wheels["discount-calculator"]["origin"]["kind"] == "built"
    assert wheels["discount-calculator"]["origin"]["source"] == "shared/discount_calculator"
    assert wheels["flask"]["services"] == ["order", "user"]
    assert wheels["flask"]["origin"]["kind"] == "downloaded"
    assert wheels["flask"]["origin"]["locked_hash"] == f"sha256:{wheels['flask']['sha256']}"
    assert wheels["flask"]["origin"]["locks"] == ["requirements/order.txt", "requirements/user.txt"]
    assert wheels["uv"]["origin"]["purpose"] == "installer"
    listed = (built_repo / "wheelhouse" / "SHA256SUMS").read_text()
    assert all(w["file"] in listed for w in document["wheels"])
    checked = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=built_repo / "wheelhouse", capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_third_party_wheels_are_for_the_target_not_the_host(built_repo: Path) -> None:
    from packaging.utils import parse_wheel_filename


    accepted = load_repository(built_repo).target.accepts()
    for wheel in (built_repo / "wheelhouse").glob("*.whl"):
        assert parse_wheel_filename(wheel.name)[3] & accepted, wheel.name


def test_second_run_with_nothing_changed_builds_and_downloads_nothing(built_repo: Path) -> None:
    before = os.readlink(built_repo / "wheelhouse")
    result = invoke(built_repo, "build-wheels")
    assert "nothing to build, nothing to download" in result.stderr
    assert os.readlink(built_repo / "wheelhouse") == before


def test_one_line_change_rebuilds_only_that_package(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    invoke(repository, "build-wheels")
    before = wheel_hashes(repository)
    users = repository / "services/user/src/user_manager/users.py"
    users.write_text(users.read_text().replace('"User created"', '"User created!"'))
    commit_all(repository, "change the user service")
    result = invoke(repository, "build-wheels")
    assert "building services/user" in result.stderr
    assert "building services/order" not in result.stderr and "discount_calculator" not in result.stderr
    assert "downloading" not in result.stderr
    after = wheel_hashes(repository)
    changed = {f for f in after if before.get(f) != after[f]}
    assert changed == {"user_manager-0.1.0-py3-none-any.whl"}


def test_service_option_limits_the_work_to_that_services_closure(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    invoke(repository, "build-wheels", "--service", "user")
    names = {w["name"] for w in manifest(repository)["wheels"]}
    assert "user-manager" in names and "order-manager" not in names and "discount-calculator" not in names
    assert not (repository / "wheelhouse/install/order.txt").exists()
    result = invoke(repository, "build-wheels", "--service", "order")
    assert "building services/user" not in result.stderr
    assert {"order", "user"} <= set(manifest(repository)["services"])
    assert (repository / "wheelhouse/install/user.txt").exists()


def test_two_clean_builds_at_different_paths_give_identical_first_party_wheels(tmp_path: Path) -> None:
    first = copy_repository(tmp_path / "a" / "monorepo")
    second = tmp_path / "elsewhere" / "clone"
    subprocess.run(["git", "clone", "-q", str(first), str(second)], check=True)
    invoke(first, "build-wheels")
    invoke(second, "build-wheels")
    built_first, built_second = wheel_hashes(first, "built"), wheel_hashes(second, "built")
    assert len(built_first) == 5
    assert built_first == built_second


def _tamper(repository: Path, name: str) -> Path:
    wheel = next((repository / "wheelhouse").glob(f"{name}-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    return wheel


@pytest.mark.parametrize("task", ["build-wheels", "verify-wheelhouse"])
def test_a_wheel_whose_bytes_changed_is_refused_naming_file_and_both_hashes(tmp_path: Path, task: str) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    invoke(repository, "build-wheels")
    expected = wheel_hashes(repository)
    link = os.readlink(repository / "wheelhouse")
    wheel = _tamper(repository, "flask")
    result = invoke(repository, task, check=False)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert wheel.name in message and expected[wheel.name] in message
    assert f"found {__import__('hashlib').sha256(wheel.read_bytes()).hexdigest()}" in message
    assert os.readlink(repository / "wheelhouse") == link


def test_a_wheel_missing_from_the_wheelhouse_is_refused_naming_it(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    invoke(repository, "build-wheels")
    wheel = next((repository / "wheelhouse").glob("werkzeug-*.whl"))
    wheel.unlink()
    result = invoke(repository, "verify-wheelhouse", check=False)
    assert result.returncode != 0 and wheel.name in result.stderr and "missing" in result.stderr
    assert invoke(repository, "build-wheels", check=False).returncode != 0
    invoke(repository, "build-wheels", "--clean")
    invoke(repository, "verify-wheelhouse")


def test_a_failed_build_leaves_the_previous_wheelhouse_in_place(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    invoke(repository, "build-wheels")
    link, before = os.readlink(repository / "wheelhouse"), wheel_hashes(repository)
    pyproject = repository / "services/user/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('packages = ["src/user_manager"]', 'packages = ["src/no_such_package"]'))
    result = invoke(repository, "build-wheels", check=False)
    assert result.returncode != 0
    assert "services/user" in result.stderr.strip().splitlines()[-1]
    assert os.readlink(repository / "wheelhouse") == link
    assert wheel_hashes(repository) == before
    verify((repository / "wheelhouse").resolve())


def test_kill_9_at_any_moment_leaves_a_complete_wheelhouse(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    invoke(repository, "build-wheels")
    for delay in (0.1, 0.4, 0.8, 1.2, 1.6, 2.5):
        process = subprocess.Popen(
            [sys.executable, "-m", "invoke", "build-wheels", "--clean"],
            cwd=repository,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the run and every tool it started
        process.wait()
        house = verify((repository / "wheelhouse").resolve())
        assert {e.name for e in house.entries.values()} >= {"order-manager", "user-manager", "flask"}
    result = invoke(repository, "build-wheels")
    assert "nothing to build" in result.stderr
    assert not list((repository / ".wheelhouse").glob("partial-*"))


def test_two_runs_started_at_once_do_not_corrupt_the_wheelhouse(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    runs = [
        subprocess.Popen([sys.executable, "-m", "invoke", "build-wheels"], cwd=repository, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    verify((repository / "wheelhouse").resolve())
    assert sum("nothing to build" in err for _, err in outputs) == 1


def test_a_new_service_directory_is_locked_built_and_installed_with_no_other_edit(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    service = repository / "services" / "inventory"
    (service / "src" / "inventory_manager").mkdir(parents=True)
    (service / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling>=1.26"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "inventory-manager"\nversion = "0.3.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["discount-calculator", "flask>=3.0"]\n\n'
        '[project.scripts]\ninventory-manager = "inventory_manager:main"\n\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["src/inventory_manager"]\n\n'
        '[tool.wheelpipe.sources]\ndiscount-calculator = { workspace = true }\n\n'
        '[tool.wheelpipe.service]\ncommand = "inventory-manager"\nport-env = "INVENTORY_PORT"\ndefault-port = 8003\n'
    )
    (service / "src" / "inventory_manager" / "__init__.py").write_text(
        "import os\n\nfrom discount_calculator import calculate_discount\nfrom flask import Flask\n\n\n"
        "def create_app():\n    app = Flask(__name__)\n\n"
        "    @app.get('/healthz')\n    def healthz():\n        return {'status': 'ok'}\n\n"
        "    @app.get('/api/stock')\n    def stock():\n        return {'items': 3, 'discount': calculate_discount()}\n\n"
        "    return app\n\n\n"
        "def main():\n    create_app().run(host='127.0.0.1', port=int(os.environ['INVENTORY_PORT']))\n"
    )
    commit_all(repository, "add the inventory service")
    invoke(repository, "lock", "--service", "inventory")
    assert (repository / "requirements/inventory.txt").is_file()
    invoke(repository, "lock", "--check")
    invoke(repository, "build-wheels")
    installed = install_offline(repository, "inventory", tmp_path / "venv")
    assert installed.returncode == 0, installed.stderr
    port = free_port()
    with Served(tmp_path / "venv/bin/inventory-manager", {"INVENTORY_PORT": str(port)}, port) as served:
        status, body = served.get("/api/stock")
    assert status == 200 and body["items"] == 3
    assert git(repository, "status", "--porcelain", "--", "services/order", "services/user", "shared", "tasks.py", "pyproject.toml") == ""
