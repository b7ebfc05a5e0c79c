"""A private registry: the release reads it with the login its users already stored.

The registry is Debian's docker-registry with htpasswd authentication (Basic, as a team's
own registry often is), on a free loopback port. The chart is pushed with a real helm after
a real `helm registry login`; the release's read (`check_chart_unreleased`) must then find it
with helm's stored credentials, or with `docker login`'s, and a refusal must say whose
credentials were refused and how to store them, never the password. Every credential file
lives in a temporary directory (HELM_REGISTRY_CONFIG, DOCKER_CONFIG, XDG_CONFIG_HOME point
there), so nobody's own login is read or written.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from monorepo import free_port, serving, unavailable, write_htpasswd

from wheelpipe.chartrelease import ChartPackage, check_chart_unreleased
from wheelpipe.deploy import ChartRegistry
from wheelpipe.errors import ReleaseError
from wheelpipe.fsutil import sha256_file
from wheelpipe.helm import Helm

USER = "team"
PASSWORD = "s3cret-Pa55word"  # noqa: S105 (a test registry's, on loopback, gone with the test)
CHART = "shop"
PUSHED = "1.0.0"


@dataclass(frozen=True)
class PrivateRegistry:
    host: str
    pushed: ChartPackage  # PUSHED, in the registry
    unpushed: ChartPackage  # the same chart at another version, not in it
    helm_login: Path  # the credentials file `helm registry login` wrote, as helm wrote it


def _chart(root: Path, version: str, helm: Helm, registry: ChartRegistry) -> ChartPackage:
    chart = root / f"chart-{version}" / CHART
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {CHART}\nversion: {version}\n")
    (chart / "templates" / "config.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shop\n")
    package = helm.package(chart, chart.parent)
    return ChartPackage(CHART, version, package, sha256_file(package), registry)


@pytest.fixture
def logins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where helm and docker keep credentials for this test: an empty directory of its own."""
    home = tmp_path / "logins"
    home.mkdir()
    monkeypatch.setenv("HELM_REGISTRY_CONFIG", str(home / "helm.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "docker"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    return home


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRegistry]:
    """docker-registry asking for Basic credentials, holding CHART PUSHED, pushed by helm
    after `helm registry login` (its credentials in a file only this fixture uses)."""
    binary = shutil.which("docker-registry")
    if not binary:
        unavailable("no docker-registry binary: run .ci/registry (Debian: apt-get install docker-registry)")
    helm_binary = shutil.which("helm")
    if not helm_binary:
        unavailable("no helm on PATH: run .ci/helm")
    helm = Helm(helm_binary)
    root = tmp_path_factory.mktemp("private-registry")
    write_htpasswd(root / "htpasswd", USER, PASSWORD)
    port, debug_port = free_port(), free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"auth:\n  htpasswd:\n    realm: wheelpipe-test\n    path: {root / 'htpasswd'}\n"
        # /v2/ asks for credentials; the debug listener's health check is what answers 200.
        f"http:\n  addr: 127.0.0.1:{port}\n  debug:\n    addr: 127.0.0.1:{debug_port}\n"
    )
    host = f"127.0.0.1:{port}"
    registry = ChartRegistry(host, "team/charts")
    with serving([binary, "serve", str(config)], root / "registry.log", f"http://127.0.0.1:{debug_port}/debug/health", "docker-registry"):
        env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "HELM_REGISTRY_CONFIG": str(root / "helm-login.json")}
        login = subprocess.run(
            [helm_binary, "registry", "login", host, "--username", USER, "--password-stdin", "--plain-http"],
            input=PASSWORD,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert login.returncode == 0, login.stderr
        pushed = _chart(root, PUSHED, helm, registry)
        push = subprocess.run([helm_binary, "push", str(pushed.path), registry.remote, "--plain-http"], env=env, capture_output=True, text=True, check=False)
        assert push.returncode == 0, push.stderr
        yield PrivateRegistry(host, pushed, _chart(root, "1.0.1", helm, registry), root / "helm-login.json")


def _store(path: Path, host: str, user: str, password: str) -> None:
    """A docker-style config.json holding a login for `host`, as both helm and docker write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": encoded}}}))


def _refusal(chart: ChartPackage) -> str:
    with pytest.raises(ReleaseError) as caught:
        check_chart_unreleased(chart)
    message = str(caught.value)
    assert "\n" not in message
    assert PASSWORD not in message and base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in message
    return message


def test_the_login_helm_stored_reads_the_pushed_version_and_finds_a_new_one_free(private: PrivateRegistry, logins: Path) -> None:
    shutil.copy(private.helm_login, logins / "helm.json")
    assert check_chart_unreleased(private.pushed) is False  # this very package is there: not pushed again
    assert check_chart_unreleased(private.unpushed) is True


def test_the_login_docker_stored_is_read_when_helm_has_none(private: PrivateRegistry, logins: Path) -> None:
    _store(logins / "docker" / "config.json", private.host, USER, PASSWORD)
    assert check_chart_unreleased(private.pushed) is False


def test_helm_s_login_under_the_xdg_config_home_is_found_without_helm_registry_config(
    private: PrivateRegistry, logins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HELM_REGISTRY_CONFIG")
    _store(logins / "xdg" / "helm" / "registry" / "config.json", private.host, USER, PASSWORD)
    assert check_chart_unreleased(private.pushed) is False


def test_with_no_stored_login_the_refusal_names_the_host_and_the_command_that_stores_one(private: PrivateRegistry, logins: Path) -> None:
    _store(logins / "helm.json", "registry.example.com", USER, PASSWORD)  # a login, for another host
    message = _refusal(private.pushed)
    assert "401" in message
    assert f"no credentials stored for {private.host}" in message
    assert f"`helm registry login {private.host}`" in message


def test_a_wrong_password_is_refused_naming_the_login_and_its_user_never_the_password(private: PrivateRegistry, logins: Path) -> None:
    _store(logins / "docker" / "config.json", private.host, "intruder", PASSWORD)
    message = _refusal(private.pushed)
    assert "with the credentials of `docker login` for user 'intruder'" in message
    assert PASSWORD not in message


def test_helm_s_login_wins_over_docker_s(private: PrivateRegistry, logins: Path) -> None:
    # A chart is pushed with helm's login: the read that decides the push must use the same one.
    _store(logins / "helm.json", private.host, "stale", "wrong")
    _store(logins / "docker" / "config.json", private.host, USER, PASSWORD)
    message = _refusal(private.pushed)
    assert "`helm registry login` for user 'stale'" in message


@pytest.mark.parametrize("entry", ["not base64!", base64.b64encode(b"no colon").decode(), 42])
def test_a_malformed_stored_login_is_passed_over_for_the_next(private: PrivateRegistry, logins: Path, entry: object) -> None:
    (logins / "helm.json").write_text(json.dumps({"auths": {private.host: {"auth": entry}}}))
    _store(logins / "docker" / "config.json", private.host, USER, PASSWORD)
    assert check_chart_unreleased(private.pushed) is False
