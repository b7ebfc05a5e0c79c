"""Deploy: manifests and the Helm chart from the model and the registry's digests, validated
offline and proven by running (tests/packages/deploy_services).

One module fixture builds the team's five images once and pushes them to a real registry
(Debian's docker-registry on loopback, test_push's fixture); every test works on a copy of
that repository. The chart tests run a real helm v4 (.ci/helm installs it), the checks the real
kubernetes-validate schemas. Every image tag, image and container made here is removed at the
end, by name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from monorepo import ROOT, commit_all, copy_repository, free_port, invoke, member_bytes, one_error, unavailable
from test_images import Ledger, docker
from test_push import Registry, registry  # noqa: F401 - the module's registry fixture

from wheelpipe import podrun
from wheelpipe.deploy import load_pushed
from wheelpipe.manifestcheck import first_difference

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FIXTURE = ROOT / "tests" / "packages" / "deploy_services"
SERVICES = ["beat", "importfail", "scribbler", "web", "wrongport"]
HEALTHY = ["beat", "web"]
GREETING = "a: b # c 'd' \"e\"\nsecond line"
# Long enough for a healthy pod to pass its probes; a broken one never does.
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Deployed:
    repository: Path  # built, pushed; every test copies it
    registry: Registry
    digests: dict[str, str]  # service -> sha256:...


def set_registry(repository: Path, prefix: str) -> None:
    path = repository / "pyproject.toml"
    text = path.read_text()
    assert 'registry = "127.0.0.1:5000/shop/"' in text
    path.write_text(text.replace('registry = "127.0.0.1:5000/shop/"', f'registry = "{prefix}"'))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, registry: Registry, docker_base_image: str) -> Iterator[Deployed]:  # noqa: F811
    repository = copy_repository(tmp_path_factory.mktemp("deploy") / "monorepo", FIXTURE)
    set_registry(repository, registry.prefix)
    commit_all(repository, "deploy to the test's registry")
    ledger = Ledger()
    try:
        invoke(repository, "build-wheels")
        pushed = invoke(repository, "image", "--all", "--push", "--verbose", "--prefix", registry.prefix, "--base-image", docker_base_image, check=False)
        ledger.record(pushed.stderr)
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        digests = {}
        for line in pushed.stdout.splitlines():
            repository_name, _, digest = line.partition("@")
            digests[repository_name.removeprefix(registry.prefix)] = digest
        assert sorted(digests) == SERVICES, pushed.stdout
        yield Deployed(repository, registry, digests)
    finally:
        for service in SERVICES:
            docker("rmi", f"{registry.prefix}{service}:1.0.0", check=False)
        ledger.clean()


@pytest.fixture
def shop(deployed: Deployed, tmp_path: Path) -> Path:
    """A private copy of the built and pushed repository (its push record included)."""
    return Path(shutil.copytree(deployed.repository, tmp_path / "monorepo", symlinks=True))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def deployment(repository: Path, service: str) -> dict[str, Any]:
    return next(d for d in documents(repository / f"deploy/manifests/staging/{service}.yaml") if d["kind"] == "Deployment")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds {old!r}"
    path.write_text(text.replace(old, new, 1))


# --- manifests: what they pin and say ------------------------------------------------------


def test_manifests_pin_the_digest_the_registry_reported_and_the_image_s_own_user(shop: Path, deployed: Deployed) -> None:
    result = invoke(shop, "manifests", "--env", "staging")
    assert sorted(line.split(":")[0] for line in result.stdout.splitlines()) == [f"deploy/manifests/staging/{s}.yaml" for s in SERVICES]
    record = load_pushed(shop / ".wheelhouse")
    for service in SERVICES:
        tag = f"{deployed.registry.prefix}{service}:1.0.0"
        pod = deployment(shop, service)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == f"{deployed.registry.prefix}{service}@{deployed.digests[service]}"
        # The user is the image's config's, as the push recorded it from docker inspect.
        configured = json.loads(docker("image", "inspect", "--format", "{{json .Config.User}}", tag).stdout)
        assert record[tag].user == configured == "10001:10001"
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (10001, 10001)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["volumeMounts"] == [{"mountPath": "/tmp", "name": "tmp"}]
    web = deployment(shop, "web")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert web["spec"]["replicas"] == 2  # the environment's override
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["command"] == ["/srv/venv/bin/python", "-m", "web", "--port", "$(WEB_PORT)"]
    assert {"name": "WEB_PORT", "value": "8080"} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready?probe=1", "port": "http"}
    assert container["resources"] == {"limits": {"memory": "128Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}}
    web_service = next(d for d in documents(shop / "deploy/manifests/staging/web.yaml") if d["kind"] == "Service")
    assert web_service["spec"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http"}]
    beat = deployment(shop, "beat")["spec"]["template"]["spec"]["containers"][0]
    assert beat["livenessProbe"]["exec"] == {"command": ["/srv/venv/bin/service-health"]}
    assert [d["kind"] for d in documents(shop / "deploy/manifests/staging/beat.yaml")] == ["Deployment"]  # a worker: no Service
    assert "livenessProbe" not in deployment(shop, "scribbler")["spec"]["template"]["spec"]["containers"][0]  # no health command
    assert deployment(shop, "web")["metadata"]["annotations"] == {"org.opencontainers.image.revision": record[f"{deployed.registry.prefix}web:1.0.0"].revision}


def test_the_same_inputs_give_the_same_bytes_and_an_unrelated_commit_changes_no_manifest(shop: Path, tmp_path: Path) -> None:
    invoke(shop, "manifests")
    first = {p.name: p.read_bytes() for p in (shop / "deploy/manifests/staging").iterdir()}
    # Another clone, elsewhere, with the same push record renders the same bytes.
    other = Path(shutil.copytree(shop, tmp_path / "elsewhere" / "clone", symlinks=True))
    shutil.rmtree(other / "deploy")
    invoke(other, "manifests")
    assert {p.name: p.read_bytes() for p in (other / "deploy/manifests/staging").iterdir()} == first
    # A new commit that changes no image and no setting leaves every file as it was.
    (shop / "apps/beat/NOTES.txt").write_text("beat\n")
    commit_all(shop, "docs")
    again = invoke(shop, "manifests")
    assert all(line.endswith(": unchanged") for line in again.stdout.splitlines()), again.stdout
    assert {p.name: p.read_bytes() for p in (shop / "deploy/manifests/staging").iterdir()} == first


def test_affected_since_renders_only_the_services_a_change_touches(shop: Path) -> None:
    commit_all(shop, "pushed")
    (shop / "apps/beat/src/beat/extra.py").write_text("X = 1\n")
    result = invoke(shop, "manifests", "--affected-since", "HEAD")
    assert result.stdout.splitlines() == ["deploy/manifests/staging/beat.yaml: written (Deployment)"]


def test_yaml_special_characters_round_trip(shop: Path) -> None:
    invoke(shop, "manifests", "--service", "web")
    (container,) = deployment(shop, "web")["spec"]["template"]["spec"]["containers"]
    assert {"name": "GREETING", "value": GREETING} in container["env"]
    # Not one of them reached the file unquoted: every line of a value stays inside its string.
    assert "second line" not in "".join(line for line in (shop / "deploy/manifests/staging/web.yaml").read_text().splitlines() if "GREETING" not in line and '"value"' not in line)


# --- --check: schemas, restricted, drift, the registry ------------------------------------


def test_check_passes_for_what_was_written_then_names_each_problem_by_file_resource_and_field(shop: Path, deployed: Deployed) -> None:
    invoke(shop, "manifests")
    result = invoke(shop, "manifests", "--check")
    assert len(result.stdout.splitlines()) == len(SERVICES)
    assert all("valid for Kubernetes 1.30 and 1.37, restricted, matches the model and the registry" in line for line in result.stdout.splitlines()), result.stdout

    # One careless or hostile edit per file; one --check names them all.
    staging = shop / "deploy/manifests/staging"
    edit(staging / "web.yaml", '"replicas": 2', '"replicas": 3')
    edit(staging / "beat.yaml", '"automountServiceAccountToken": false', '"automountServiceAccountToken": false, "replicaz": 1')
    edit(staging / "scribbler.yaml", '"allowPrivilegeEscalation": false', '"allowPrivilegeEscalation": true')
    edit(staging / "wrongport.yaml", '"readOnlyRootFilesystem": true', '"readOnlyRootFilesystem": false')
    missing = "sha256:" + "0" * 64
    edit(staging / "importfail.yaml", deployed.digests["importfail"], missing)
    (staging / "mailer.yaml").write_text((staging / "beat.yaml").read_text())  # a service nobody has
    result = invoke(shop, "manifests", "--check", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    findings = [line for line in result.stderr.splitlines() if line.startswith("deploy/")]
    expected = [
        "web.yaml: Deployment web: spec.replicas: committed 3, the model and the registry say 2; run `invoke manifests`",
        "beat.yaml: Deployment beat: spec.template.spec: Additional properties are not allowed ('replicaz' was unexpected) (Kubernetes 1.30 schema)",
        "beat.yaml: Deployment beat: spec.template.spec: Additional properties are not allowed ('replicaz' was unexpected) (Kubernetes 1.37 schema)",
        "beat.yaml: Deployment beat: spec.template.spec.replicaz: committed 1, the model and the registry say nothing; run `invoke manifests`",
        "scribbler.yaml: Deployment scribbler: spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: must be false, found True (Pod Security Standard restricted)",
        "wrongport.yaml: Deployment wrongport: spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem: must be true (wheelpipe's pods write only to their emptyDir at /tmp)",
        f"importfail.yaml: Deployment importfail: spec.template.spec.containers[0].image: the registry does not have {deployed.registry.prefix}importfail@{missing}",
        f"mailer.yaml: service mailer: (file): the model has no service 'mailer' (services: {', '.join(SERVICES)}); delete the file",
    ]
    for line in expected:
        assert f"deploy/manifests/staging/{line}" in findings, result.stderr
    # Drift names the first difference of each resource; each edit is named, nothing else.
    assert len(findings) == len(expected) + 3, "\n".join(findings)  # and the drift of the other three edits


# --- bad input: one line each, nothing written ----------------------------------------------


def test_an_image_never_pushed_is_one_line_naming_the_push_command_and_nothing_is_written(shop: Path, deployed: Deployed) -> None:
    record = shop / ".wheelhouse/pushed-images.json"
    data = json.loads(record.read_text())
    del data["pushed"][f"{deployed.registry.prefix}wrongport:1.0.0"]
    record.write_text(json.dumps(data))
    line = one_error(invoke(shop, "manifests", check=False))
    assert line == (
        f"error: wrongport: no image was pushed as {deployed.registry.prefix}wrongport:1.0.0 from here (nothing records its digest); "
        f"push it: `invoke image --service wrongport --push --prefix {deployed.registry.prefix}`"
    )
    assert not (shop / "deploy").exists()  # not even the services before it


def test_an_environment_that_is_not_configured_is_one_line(shop: Path) -> None:
    line = one_error(invoke(shop, "manifests", "--env", "production", check=False))
    assert line == "error: pyproject.toml: no environment 'production' is configured (configured: staging); add [tool.wheelpipe.deploy.production]"
    line = one_error(invoke(shop, "chart", "--env", "production", check=False))
    assert "no environment 'production' is configured" in line
    assert not (shop / "deploy").exists()


def test_a_service_name_that_is_not_a_dns_label_is_one_line(shop: Path) -> None:
    edit(shop / "apps/beat/pyproject.toml", 'kind = "worker"', 'name = "beat_worker"\nkind = "worker"')
    line = one_error(invoke(shop, "manifests", check=False))
    assert line.startswith("error: apps/beat/pyproject.toml: the service name 'beat_worker' is not a DNS-1123 label"), line
    assert not (shop / "deploy").exists()


def test_an_unknown_key_in_the_deploy_table_is_one_line(shop: Path) -> None:
    edit(shop / "pyproject.toml", 'part-of = "shop"', 'part-of = "shop"\nreplica = 3')
    line = one_error(invoke(shop, "manifests", check=False))
    assert line == "error: pyproject.toml: [tool.wheelpipe.deploy.staging] has no key 'replica' (known: namespace, registry, replicas, resources, part-of, services)"
    edit(shop / "pyproject.toml", "\nreplica = 3", "")
    edit(shop / "pyproject.toml", "replicas = 2", "replicas = 2\nimage = 'x'")
    line = one_error(invoke(shop, "manifests", check=False))
    assert line == "error: pyproject.toml: [tool.wheelpipe.deploy.staging.services.web] has no key 'image' (known: replicas, resources, env)"


def test_an_unreachable_registry_is_one_line(shop: Path, deployed: Deployed) -> None:
    invoke(shop, "manifests")
    closed = f"127.0.0.1:{free_port()}"
    for path in (shop / "deploy/manifests/staging").iterdir():
        path.write_text(path.read_text().replace(deployed.registry.host, closed))
    result = invoke(shop, "manifests", "--check", check=False)
    line = one_error(result)
    assert line.startswith(f"error: cannot reach the registry {closed} (") and "Connection refused" in line, line


# --- proven by running: each pod under Docker as its spec says, probed as a kubelet -----------


def _inspect(container: str) -> dict[str, Any]:
    inspected: dict[str, Any] = json.loads(docker("container", "inspect", container).stdout)[0]
    return inspected


def _prove(runs: dict[str, podrun.ContainerRun], started: dict[str, str]) -> dict[str, str]:
    """Probe every started pod's container as a kubelet; each service's one line: passed, or why not."""
    verdicts: dict[str, str] = {}
    last: dict[str, str] = dict.fromkeys(runs, "never probed")
    deadline = time.monotonic() + START_TIMEOUT
    while len(verdicts) < len(runs) and time.monotonic() < deadline:
        for name, run in runs.items():
            if name in verdicts:
                continue
            state = _inspect(started[name])
            if not state["State"]["Running"]:
                logs = docker("logs", "--tail", "3", started[name], check=False)
                tail = [line for line in (logs.stdout + logs.stderr).splitlines() if line.strip()]
                verdicts[name] = f"{name}: exited with status {state['State']['ExitCode']}: {tail[-1] if tail else '(no output)'}"
                continue
            failures = []
            for command in run.exec_probes:
                probe = docker("exec", started[name], *command, check=False)
                if probe.returncode != 0:
                    failures.append(f"exec {' '.join(command)}: exit {probe.returncode} {(probe.stderr or probe.stdout).strip()}")
            address = next(iter(state["NetworkSettings"]["Networks"].values()))["IPAddress"]
            failures += [f for f in (podrun.http_get(address, port, path) for port, path in run.http_probes) if f]
            if not run.exec_probes and not run.http_probes and time.monotonic() > deadline - START_TIMEOUT + 3:
                verdicts[name] = f"{name}: running, no probe"
            elif not failures and (run.exec_probes or run.http_probes):
                verdicts[name] = f"{name}: probes passed"
            else:
                last[name] = failures[-1] if failures else last[name]
        time.sleep(0.5)
    for name in runs:
        verdicts.setdefault(name, f"{name}: probes did not pass within {START_TIMEOUT:g} s: {last[name]}")
    return verdicts


def test_every_pod_runs_as_its_spec_says_and_the_broken_ones_are_caught_one_line_each(shop: Path, deployed: Deployed) -> None:
    invoke(shop, "manifests")
    runs = {}
    for service in SERVICES:
        pod = deployment(shop, service)["spec"]["template"]["spec"]
        runs[service] = podrun.container_run(pod, service)
    label = f"wheelpipe.test.deploy={free_port()}"
    try:
        started = {name: docker("run", "--detach", "--label", label, *run.run_args).stdout.strip() for name, run in runs.items()}
        verdicts = _prove(runs, started)
        web = _inspect(started["web"])
        assert web["Config"]["Image"] == f"{deployed.registry.prefix}web@{deployed.digests['web']}"
        assert web["Config"]["User"] == "10001:10001"
        config = web["HostConfig"]
        assert (config["ReadonlyRootfs"], config["CapDrop"], config["SecurityOpt"], config["Memory"]) == (True, ["ALL"], ["no-new-privileges"], 128 * 2**20)
        assert list(config["Tmpfs"]) == ["/tmp"]
    finally:
        for container in docker("ps", "-aq", "--filter", f"label={label}").stdout.split():
            docker("rm", "-f", container, check=False)
    assert verdicts["web"] == "web: probes passed"
    assert verdicts["beat"] == "beat: probes passed"
    assert verdicts["importfail"].startswith("importfail: exited with status 1: ImportError: cannot import name 'DATABASE_URL' from 'importfail.settings'"), verdicts
    assert verdicts["scribbler"].startswith("scribbler: exited with status 1: OSError: [Errno 30] Read-only file system: '/srv/scribbler-state.txt'"), verdicts
    assert verdicts["wrongport"].startswith(f"wrongport: probes did not pass within {START_TIMEOUT:g} s: GET http://") and ":8081/healthz failed" in verdicts["wrongport"], verdicts


# --- the chart: real helm --------------------------------------------------------------------


def helm() -> str:
    binary = shutil.which("helm")
    if not binary:
        unavailable("no helm binary: run .ci/helm")
    version = subprocess.run([binary, "version", "--short"], capture_output=True, text=True, check=False).stdout
    if not version.startswith("v4."):
        unavailable(f"helm {version.strip()} is not helm v4: run .ci/helm")
    return binary


def test_the_chart_lints_and_renders_exactly_the_manifests(shop: Path, deployed: Deployed) -> None:
    binary = helm()
    invoke(shop, "manifests")
    result = invoke(shop, "chart")
    assert result.stdout.splitlines() == ["deploy/chart/Chart.yaml: written", "deploy/chart/templates/services.yaml: written", "deploy/chart/values.yaml: written"]
    values = yaml.safe_load((shop / "deploy/chart/values.yaml").read_text())
    assert values["services"]["web"]["image"] == f"{deployed.registry.prefix}web@{deployed.digests['web']}"
    lint = subprocess.run([binary, "lint", "--strict", "deploy/chart"], cwd=shop, capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = subprocess.run([binary, "template", "shop", "deploy/chart"], cwd=shop, capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr

    def key(document: dict[str, Any]) -> tuple[str, str]:
        return document["kind"], document["metadata"]["name"]

    from_helm = sorted((d for d in yaml.safe_load_all(rendered.stdout) if d), key=key)
    written = sorted((d for s in SERVICES for d in documents(shop / f"deploy/manifests/staging/{s}.yaml")), key=key)
    assert [key(d) for d in from_helm] == [key(d) for d in written]
    for ours, theirs in zip(written, from_helm, strict=True):
        assert first_difference(ours, theirs, "") is None, (key(ours), first_difference(ours, theirs, ""))
    web = next(d for d in from_helm if key(d) == ("Deployment", "web"))
    assert {"name": "GREETING", "value": GREETING} in web["spec"]["template"]["spec"]["containers"][0]["env"]


def test_a_release_ships_the_committed_manifests_and_chart_under_its_sha256sums_and_record(shop: Path) -> None:
    invoke(shop, "manifests")
    invoke(shop, "chart")
    commit_all(shop, "manifests and chart")
    invoke(shop, "release", "--skip-gates")
    archive = shop / "dist/wheelhouse-2.0.1.tar.gz"
    with tarfile.open(archive) as tar:
        names = {name.removeprefix("wheelhouse-2.0.1/") for name in tar.getnames()}
        # SHA256SUMS: "<digest>  <name>" per line.
        sums = {name: digest for digest, name in (line.split("  ") for line in member_bytes(tar, "wheelhouse-2.0.1/SHA256SUMS").decode().splitlines())}
        record = json.loads(member_bytes(tar, "wheelhouse-2.0.1/manifest.json"))["release"]["deploy"]
        web = member_bytes(tar, "wheelhouse-2.0.1/deploy/manifests/staging/web.yaml")
    shipped = {f"deploy/manifests/staging/{s}.yaml" for s in SERVICES} | {"deploy/chart/Chart.yaml", "deploy/chart/values.yaml", "deploy/chart/templates/services.yaml"}
    assert shipped <= names
    assert web == (shop / "deploy/manifests/staging/web.yaml").read_bytes()
    for name in shipped:
        assert sums[name] == record[name] == hashlib.sha256((shop / name).read_bytes()).hexdigest()


def _release_record(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        release: dict[str, Any] = json.loads(member_bytes(tar, "wheelhouse-2.0.1/manifest.json"))["release"]
        return release


def test_a_release_pushes_the_committed_chart_to_the_chart_registry_once_per_version(shop: Path, deployed: Deployed, tmp_path: Path) -> None:
    binary = helm()
    remote = f"oci://{deployed.registry.host}/shop/charts"
    edit(shop / "pyproject.toml", 'version = "2.0.1"\n', f'version = "2.0.1"\nchart-registry = "{remote}"\n')
    invoke(shop, "manifests")
    invoke(shop, "chart")
    commit_all(shop, "manifests, chart and where the chart goes")
    first = invoke(shop, "release", "--skip-gates")
    pushed = first.stdout.strip().splitlines()[-1]
    assert pushed.startswith(f"{remote}/shop:2.0.1@sha256:"), first.stdout
    archive = shop / "dist/wheelhouse-2.0.1.tar.gz"
    record = _release_record(archive)["chart"]
    assert record["reference"] == f"{deployed.registry.host}/shop/charts/shop:2.0.1"

    # What the registry holds is the committed chart: pulled back, it is the recorded package,
    # and it renders the committed manifests.
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    pull = subprocess.run([binary, "pull", f"{remote}/shop", "--version", "2.0.1", "--plain-http", "--destination", pulled], capture_output=True, text=True, check=False)
    assert pull.returncode == 0, pull.stderr
    (package,) = pulled.iterdir()
    assert hashlib.sha256(package.read_bytes()).hexdigest() == record["sha256"]
    with tarfile.open(package) as tar:
        assert member_bytes(tar, "shop/values.yaml") == (shop / "deploy/chart/values.yaml").read_bytes()

    # The same commit again: the same package, already there, not pushed again; the same archive.
    before = archive.read_bytes()
    again = invoke(shop, "release", "--skip-gates")
    assert "already in the registry, this very package" in again.stdout + again.stderr
    assert remote not in again.stdout
    assert archive.read_bytes() == before

    # Another chart under the same version is refused before anything is written: here by the
    # version's archive in dist/, made of another commit; on a machine without it (another CI
    # runner), by the registry.
    edit(shop / "pyproject.toml", "[tool.wheelpipe.deploy.staging.services.web]\nreplicas = 2", "[tool.wheelpipe.deploy.staging.services.web]\nreplicas = 3")
    invoke(shop, "manifests")
    invoke(shop, "chart")
    commit_all(shop, "three web pods, same version")
    line = one_error(invoke(shop, "release", "--skip-gates", check=False))
    assert line.startswith("error: dist/wheelhouse-2.0.1.tar.gz: release 2.0.1 was already made of commit "), line
    assert archive.read_bytes() == before
    kept = tmp_path / "kept.tar.gz"
    shutil.move(archive, kept)
    commit_all(shop, "no archive in dist/, as on another machine")  # this copy's git holds dist/ too
    line = one_error(invoke(shop, "release", "--skip-gates", check=False))
    assert line.startswith(f"error: {remote}: shop:2.0.1 already holds another chart (sha256:{record['sha256']}; this release's package is sha256:"), line
    assert line.endswith("a version is released once; raise [tool.wheelpipe.release] version")
    assert not archive.exists() and kept.read_bytes() == before
    stored = subprocess.run([binary, "show", "values", f"{remote}/shop", "--version", "2.0.1", "--plain-http"], capture_output=True, text=True, check=False)
    assert yaml.safe_load(stored.stdout)["services"]["web"]["replicas"] == 2


def test_a_release_whose_chart_is_stale_or_whose_chart_registry_is_down_is_one_line_and_writes_nothing(shop: Path, deployed: Deployed) -> None:
    helm()
    invoke(shop, "manifests")
    invoke(shop, "chart")
    edit(shop / "pyproject.toml", 'version = "2.0.1"\n', f'version = "2.0.2"\nchart-registry = "oci://{deployed.registry.host}/shop/charts"\n')
    commit_all(shop, "a new version, the chart not written again")
    line = one_error(invoke(shop, "release", "--skip-gates", check=False))
    assert line == "error: deploy/chart/Chart.yaml: version '2.0.1', but the release is '2.0.2' ([tool.wheelpipe.release] version); run `invoke chart` and commit it"
    assert not (shop / "dist").exists()

    invoke(shop, "chart")
    closed = f"127.0.0.1:{free_port()}"
    edit(shop / "pyproject.toml", deployed.registry.host + "/shop/charts", closed + "/shop/charts")
    commit_all(shop, "the chart for 2.0.2; a chart registry that is down")
    line = one_error(invoke(shop, "release", "--skip-gates", check=False))
    assert line.startswith(f"error: pushing the chart to oci://{closed}/shop/charts: cannot reach the registry {closed} ("), line
    assert not (shop / "dist").exists()
