"""Deploy, the parts that need no Docker: the deploy table's checks, the image user a pod can
state, the pod-spec-to-docker translation's expansion and refusals, the restricted rules
against a hostile pod, and the manifests' JSON-compatible YAML (tests/test_deploy.py runs the
rest for real)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from wheelpipe import manifests, podrun
from wheelpipe.deploy import DeployError, Pushed, parse_chart_registry, parse_environments
from wheelpipe.helm import Helm, HelmError
from wheelpipe.manifestcheck import restricted_findings

GREETING = "a: b # c 'd' \"e\"\nsecond line"


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"prod": {"namespace": "Shop"}}, "[tool.wheelpipe.deploy.prod] namespace must be a DNS-1123 label"),
        ({"prod": {"registry": "shop/"}}, "[tool.wheelpipe.deploy.prod] registry must be the image prefix"),
        ({"prod": {"replicas": True}}, "[tool.wheelpipe.deploy.prod] replicas must be a number of pods (0-1000), found True"),
        ({"prod": {"resources": {"limits": {"memory": "lots"}}}}, 'resources limits memory must be a Kubernetes quantity such as "250m", "1" or "256Mi", found \'lots\''),
        ({"prod": {"resources": {"limits": {"gpu": "1"}}}}, "resources limits has no resource 'gpu' (known: cpu, memory)"),
        ({"Prod": {}}, "an environment's name must be a DNS-1123 label"),
        ({"prod": {"services": {"web": {"env": {"A": 1}}}}}, "[tool.wheelpipe.deploy.prod.services.web] env: expected NAME = \"a string\""),
    ],
)
def test_a_bad_deploy_table_is_one_line_naming_the_key(table: dict[str, Any], says: str) -> None:
    with pytest.raises(DeployError) as raised:
        parse_environments(table)
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("user", "says"),
    [("app", "runs as user 'app'; a restricted pod needs a numeric USER"), ("0:0", "runs as root"), ("", "runs as user ''")],
)
def test_an_image_user_a_restricted_pod_cannot_state_is_one_line(user: str, says: str) -> None:
    with pytest.raises(DeployError) as raised:
        Pushed("r.example/shop/web:1.0.0", "sha256:" + "a" * 64, user, "").numeric_user("web")
    assert says in str(raised.value)
    assert Pushed("r.example/shop/web:1.0.0", "sha256:" + "a" * 64, "10001:10002", "").numeric_user("web") == (10001, 10002)


def test_the_translation_expands_as_the_kubelet_and_refuses_what_it_cannot_run() -> None:
    assert podrun.expand("--bind=0.0.0.0:$(PORT)", {"PORT": "8080"}) == "--bind=0.0.0.0:8080"
    assert podrun.expand("$$(PORT) $(UNSET) $$HOME", {"PORT": "1"}) == "$(PORT) $(UNSET) $HOME"
    pod = {"containers": [{"name": "service", "image": "i", "command": ["/srv/venv/bin/x"]}], "hostNetwork": True}
    with pytest.raises(DeployError, match="the pod spec sets hostNetwork, which the translation to docker run does not carry out"):
        podrun.container_run(pod, "web")
    pod = {"containers": [{"name": "service", "image": "i", "securityContext": {"privileged": True}}]}
    with pytest.raises(DeployError, match="sets privileged"):
        podrun.container_run(pod, "web")


def test_the_restricted_rules_name_each_field_of_a_hostile_pod() -> None:
    document = {
        "kind": "Deployment",
        "metadata": {"name": "evil"},
        "spec": {
            "template": {
                "spec": {
                    "hostPID": True,
                    "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
                    "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 80}], "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}}],
                }
            }
        },
    }
    fields = {line.split(": ")[2] for line in (f.line() for f in restricted_findings("evil.yaml", document))}
    assert fields == {
        "spec.template.spec.hostPID",
        "spec.template.spec.volumes[root]",
        "spec.template.spec.containers[0].securityContext.privileged",
        "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
        "spec.template.spec.containers[0].securityContext.capabilities.drop",
        "spec.template.spec.containers[0].securityContext.capabilities.add",
        "spec.template.spec.containers[0].securityContext.runAsNonRoot",
        "spec.template.spec.containers[0].securityContext.seccompProfile.type",
        "spec.template.spec.containers[0].ports",
        "spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem",
    }


def test_a_manifest_is_json_compatible_yaml_whatever_its_values_hold() -> None:
    document = {"metadata": {"name": "x", "annotations": {"a": GREETING, "b": "- [not, a, list]", "c": "yes", "d": "0x10"}}}
    text = manifests.dump(document)
    assert json.loads(text) == document
    assert yaml.safe_load(text) == document  # YAML 1.1's yes/0x10 stay strings: they are quoted


def test_the_environment_is_resolved_once_and_an_override_of_no_service_is_one_line(tmp_path: Path) -> None:
    from monorepo import ROOT, copy_repository

    from wheelpipe import load_repository

    repository = copy_repository(tmp_path / "monorepo", ROOT / "tests" / "packages" / "deploy_services")
    pyproject = repository / "pyproject.toml"
    assert manifests.environment(load_repository(repository), None).namespace == "shop"  # the only one
    pyproject.write_text(pyproject.read_text() + '\n[tool.wheelpipe.deploy.staging.services.ghost]\nreplicas = 1\n')
    with pytest.raises(DeployError) as raised:
        manifests.environment(load_repository(repository), None)
    assert str(raised.value) == "pyproject.toml: [tool.wheelpipe.deploy.staging.services.ghost]: no service 'ghost' (services: beat, importfail, scribbler, web, wrongport)"
    pyproject.write_text(pyproject.read_text() + '\n[tool.wheelpipe.deploy.production]\nregistry = "registry.example.com/shop/"\n')
    with pytest.raises(DeployError, match=r"^several environments are configured \(staging, production\): give --env NAME$"):
        manifests.environment(load_repository(repository), None)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("https://registry.example.com/team/charts", "must be oci://<registry host>/<path>"),
        ("oci://registry.example.com", "must be oci://<registry host>/<path>"),
        ("oci://registry.example.com/Team/Charts", "must be oci://<registry host>/<path>"),
        ("oci://registry.example.com/team/charts:1.0", "must be oci://<registry host>/<path>"),
        ("oci://ci:s3cret@registry.example.com/team/charts", "holds a user name or password (ci:s3cret@...); log in with `helm registry login` instead"),
        (42, "found 42"),
    ],
)
def test_a_chart_registry_that_is_no_oci_repository_is_one_line(value: object, says: str) -> None:
    with pytest.raises(DeployError) as raised:
        parse_chart_registry(value, "pyproject.toml: [tool.wheelpipe.release] chart-registry")
    assert says in str(raised.value)
    assert str(raised.value).startswith("pyproject.toml: [tool.wheelpipe.release] chart-registry")
    assert "\n" not in str(raised.value)


def test_a_chart_registry_names_the_host_and_path_helm_pushes_under() -> None:
    registry = parse_chart_registry("oci://127.0.0.1:5000/team/charts/", "where")
    assert (registry.host, registry.path, registry.remote) == ("127.0.0.1:5000", "team/charts", "oci://127.0.0.1:5000/team/charts")
    assert registry.repository("shop") == "team/charts/shop"


def test_a_release_with_a_chart_registry_and_no_helm_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HelmError) as raised:
        Helm.find("pyproject.toml: [tool.wheelpipe.release] chart-registry is set")
    assert str(raised.value).startswith("pyproject.toml: [tool.wheelpipe.release] chart-registry is set, but there is no helm on PATH")
