"""`invoke manifests`: a Deployment (and, for an http service, a Service) per service and
environment, from the repository model and the images the registry took.

Everything in a manifest comes from one of three places, never from a hand-written file:
the model (command, port and its variable, health path or health command, resources), the
environment's [tool.wheelpipe.deploy.<env>] (namespace, registry, replicas, overrides), and
the record of the push (the digest the registry reported, the image's numeric user, the commit
it was built from). A manifest is JSON, which is YAML: every string is quoted and escaped, so
no value (a ':', a '#', a quote, a newline) can change its structure, and keys are sorted
and nothing time-dependent is written, so the same inputs give the same bytes.

Files: deploy/manifests/<env>/<service>.yaml, one per service, documents separated by `---`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import launch
from .build.firstparty import FileSource
from .deploy import DEFAULT_RESOURCES, DNS_LABEL, DeployError, Environment, Pushed, load_pushed
from .fsutil import write_if_changed
from .model import PORT_PLACEHOLDER, HttpService, Package, PackageLocation, Repository, ServiceSettings, service_settings
from .wheelhouse import STORE

DEPLOY_DIR = "deploy"
MANIFESTS_DIR = f"{DEPLOY_DIR}/manifests"
MANAGED_BY = "wheelpipe"
REVISION_ANNOTATION = "org.opencontainers.image.revision"
CONTAINER = "service"  # the one container of every pod
TMP_VOLUME = "tmp"
PORT_NAME = "http"
# Probes, timed as the image's HEALTHCHECK is (service.Dockerfile: every 5 s, 3 s to answer,
# 15 s to start): readiness takes a pod out of its Service quickly, liveness restarts only a
# pod that stayed unhealthy.
READINESS = {"periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}
LIVENESS = {"initialDelaySeconds": 15, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
HEADER = "# Written by `invoke manifests` from the repository model and the registry's digests; do not edit.\n"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Manifest:
    """One service's file: its Deployment and, for an http service, its Service."""

    service: str
    path: str  # relative to the repository's root
    documents: tuple[dict[str, Any], ...]

    def text(self) -> str:
        return HEADER + "".join(f"---\n{dump(document)}" for document in self.documents)


def dump(document: dict[str, Any]) -> str:
    """A document as JSON-compatible YAML: sorted keys, every string quoted and escaped."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def environment(repo: Repository, name: str | None) -> Environment:
    """--env NAME, or the one environment when the repository configures exactly one."""
    known = ", ".join(repo.environments) or "none"
    if name is None:
        if len(repo.environments) == 1:
            name = next(iter(repo.environments))
        elif not repo.environments:
            msg = 'pyproject.toml: no [tool.wheelpipe.deploy.<env>] table; add one, e.g. [tool.wheelpipe.deploy.production] with namespace = "shop" and registry = "registry.example.com/shop/"'
            raise DeployError(msg)
        else:
            msg = f"several environments are configured ({known}): give --env NAME"
            raise DeployError(msg)
    if name not in repo.environments:
        msg = f"pyproject.toml: no environment {name!r} is configured (configured: {known}); add [tool.wheelpipe.deploy.{name}]"
        raise DeployError(msg)
    chosen = repo.environments[name]
    for service in chosen.services:
        if service not in repo.services:
            msg = f"pyproject.toml: [tool.wheelpipe.deploy.{name}.services.{service}]: no service {service!r} (services: {', '.join(repo.services)})"
            raise DeployError(msg)
    return chosen


def tag_for(repo: Repository, env: Environment, service: str) -> str:
    if not env.registry:
        msg = f'pyproject.toml: {env.label} registry is not set: the image prefix the images are pushed under, e.g. registry = "registry.example.com/team/"'
        raise DeployError(msg)
    return f"{env.registry}{service}:{repo.service(service).version}"


def pushed_image(repo: Repository, env: Environment, service: str, pushed: dict[str, Pushed]) -> Pushed:
    tag = tag_for(repo, env, service)
    if tag not in pushed:
        msg = f"{service}: no image was pushed as {tag} from here (nothing records its digest); push it: `invoke image --service {service} --push --prefix {env.registry}`"
        raise DeployError(msg)
    return pushed[tag]


def render(repo: Repository, env: Environment, services: list[str]) -> list[Manifest]:
    """Every asked service's manifest, or the first problem; nothing is written here."""
    pushed = load_pushed(repo.root / STORE)
    for name in services:  # what the model alone can refuse, before any push is looked up
        deployable(repo.service(name))
    return [render_service(repo, env, repo.service(name), pushed_image(repo, env, name, pushed)) for name in services]


def deployable(package: Package) -> ServiceSettings:
    """The service's settings, once its name is one Kubernetes takes."""
    name = package.service_name
    where = f"{package.directory}/pyproject.toml"
    settings = service_settings(package, "to deploy it")
    if not DNS_LABEL.fullmatch(name):
        msg = f"{where}: the service name {name!r} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63), which a Deployment's name must be; set [tool.wheelpipe.service] name"
        raise DeployError(msg)
    if isinstance(settings, HttpService) and not _DNS_1035.fullmatch(name):
        msg = f"{where}: the service name {name!r} must start with a letter: a Kubernetes Service's name is a DNS-1035 label; set [tool.wheelpipe.service] name"
        raise DeployError(msg)
    return settings


def render_service(repo: Repository, env: Environment, package: Package, pushed: Pushed) -> Manifest:
    name = package.service_name
    settings = deployable(package)
    uid, gid = pushed.numeric_user(name)
    override = env.override(name)
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": env.part_of}
    labels = {**selector, "app.kubernetes.io/version": label_value(package.version), "app.kubernetes.io/managed-by": MANAGED_BY}
    annotations = {REVISION_ANNOTATION: pushed.revision} if pushed.revision else {}
    resources = override.resources.over(env.resources.over(settings.resources.over(DEFAULT_RESOURCES)))
    pod = pod_spec(name, settings, pushed.reference, uid, gid, dict(override.env), resources_spec(resources.requests, resources.limits))
    metadata = {"name": name, "namespace": env.namespace, "labels": labels, **({"annotations": annotations} if annotations else {})}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": override.replicas if override.replicas is not None else env.replicas,
            "selector": {"matchLabels": selector},
            # A new pod must be ready before an old one goes: a bad image never takes the service down.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels, **({"annotations": annotations} if annotations else {})}, "spec": pod},
        },
    }
    documents: list[dict[str, Any]] = [deployment]
    if isinstance(settings, HttpService):
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": env.namespace, "labels": labels},
                "spec": {"selector": selector, "ports": [{"name": PORT_NAME, "port": settings.port, "targetPort": PORT_NAME, "protocol": "TCP"}]},
            }
        )
    return Manifest(name, f"{MANIFESTS_DIR}/{env.name}/{name}.yaml", tuple(documents))


def label_value(text: str) -> str:
    """A label value (63 characters of letters, digits, '-', '_', '.'): a version's '+' becomes '_'."""
    return _LABEL_VALUE.sub("_", text)[:63].strip("-_.")


def resources_spec(requests: tuple[tuple[str, str], ...], limits: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {key: dict(values) for key, values in (("requests", requests), ("limits", limits)) if values}


def pod_spec(name: str, settings: ServiceSettings, image: str, uid: int, gid: int, extra_env: dict[str, str], resources: dict[str, Any]) -> dict[str, Any]:
    """The pod of a service: its command, env, port and probes from the model; the user the
    image's config names; a read-only root with an emptyDir at /tmp; nothing privileged. What
    verify-image starts (startcheck.py) and what the manifests deploy are this one spec."""
    env = {**extra_env, **launch.environment(settings)}
    if isinstance(settings, HttpService) and extra_env.get(settings.port_env, str(settings.port)) != str(settings.port):
        msg = f"{name}: the deploy table sets {settings.port_env}={extra_env[settings.port_env]!r}, but the service listens on port {settings.port} (its [tool.wheelpipe.service] port)"
        raise DeployError(msg)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": command_words(settings),
        "env": [{"name": key, "value": value} for key, value in sorted(env.items())],
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
        },
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    probe = probe_action(settings)
    if probe is not None:
        container["readinessProbe"] = {**probe, **READINESS}
        container["livenessProbe"] = {**probe, **LIVENESS}
    if isinstance(settings, HttpService):
        container["ports"] = [{"name": PORT_NAME, "containerPort": settings.port, "protocol": "TCP"}]
    return {
        "automountServiceAccountToken": False,  # the services never talk to the API server
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }


def command_words(settings: ServiceSettings) -> list[str]:
    """The model's command as the image's `service` script runs it: the program by its path in
    the venv (never another on the PATH), and {port} as the kubelet's $(VAR) of the port
    variable; a literal '$' doubled, so the kubelet expands nothing else."""
    words = [str(launch.VENV_BIN / settings.command[0])] + [word.replace("$", "$$") for word in settings.command[1:]]
    if isinstance(settings, HttpService):
        words = [words[0]] + [word.replace(PORT_PLACEHOLDER, f"$({settings.port_env})") for word in words[1:]]
    return words


def probe_action(settings: ServiceSettings) -> dict[str, Any] | None:
    """What the image's HEALTHCHECK checks, as a kubelet probes it: an http service's health
    path on its port (from outside, as its Service reaches it); a worker's health command,
    which the image installs as service-health; a worker without one has no probe (the
    process is its health: the kubelet restarts it when it exits)."""
    if isinstance(settings, HttpService):
        return {"httpGet": {"path": settings.health_path, "port": PORT_NAME}}
    if settings.health_command:
        return {"exec": {"command": [str(launch.VENV_BIN / "service-health")]}}
    return None


def write(repo: Repository, manifests: list[Manifest]) -> list[str]:
    """Write every manifest (each atomically), returning the lines to print; unchanged files
    are left alone, so their times say when their content last changed."""
    lines = []
    for manifest in manifests:
        if write_if_changed(repo.root / manifest.path, manifest.text()):
            lines.append(f"{manifest.path}: written ({', '.join(d['kind'] for d in manifest.documents)})")
        else:
            lines.append(f"{manifest.path}: unchanged")
    return lines


def released(source: FileSource) -> dict[str, bytes]:
    """The committed deploy/ files a release ships (manifests and chart), by their path under
    deploy/, read from the release's source (the commit, or the dirty working tree): what
    `invoke manifests --check` validated, never rendered again at release time."""
    location = PackageLocation(DEPLOY_DIR, source.root / DEPLOY_DIR)
    if not location.path.is_dir():
        return {}
    return {file.path: stream.read() for file, stream in source.contents(source.files(location))}


def read_documents(path: Path) -> list[dict[str, Any]]:
    """The documents of a manifest file (JSON-compatible YAML, or any YAML a team committed)."""
    import yaml  # the tooling lock's PyYAML (kubernetes-validate's): only --check reads YAML

    text = path.read_text(encoding="utf-8")
    try:
        return [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        msg = f"line {at.lstrip(':') or '?'}: not YAML ({getattr(error, 'problem', None) or error})"
        raise DeployError(msg) from None
