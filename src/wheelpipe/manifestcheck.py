"""`invoke manifests --check`: the committed manifests, validated offline and against now.

For every committed deploy/manifests/<env>/<service>.yaml: each document against the real
Kubernetes schemas (kubernetes-validate's bundled OpenAPI schemas, strict: an unknown field is
an error) for the oldest Kubernetes supported (1.30) and the newest it bundles; each pod
against the Pod Security Standard "restricted" level (and a read-only root, which that level
does not demand and these pods do); the file against what the model and the push record say
now (drift); and each pinned digest against the registry. Each failure is one line naming the
file, the resource and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry
from .deploy import DeployError, Environment
from .manifests import MANIFESTS_DIR, Manifest, read_documents
from .model import Repository

OLDEST_KUBERNETES = "1.30"
# The volume types the restricted level allows (Pod Security Standards, "Volume Types").
_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


@dataclass(frozen=True)
class Finding:
    file: str
    resource: str  # "Deployment order"
    field: str  # spec.template.spec.containers[0].image
    problem: str

    def line(self) -> str:
        return f"{self.file}: {self.resource}: {self.field}: {self.problem}"


def kubernetes_versions() -> tuple[str, str]:
    """The oldest supported Kubernetes and the newest kubernetes-validate bundles schemas of."""
    from kubernetes_validate import utils

    return OLDEST_KUBERNETES, utils.major_minor(utils.latest_version())


def check(repo: Repository, env: Environment, expected: list[Manifest], every_service: bool) -> tuple[list[str], list[str]]:
    """(failures, passes): one line each. With every_service, a committed file of a service the
    model no longer has is a failure too (it would still be applied)."""
    findings: list[Finding] = []
    if every_service:
        rendered = {manifest.path for manifest in expected}
        for path in manifest_paths(repo, env):
            name = repo.relative(path)
            if name not in rendered:
                findings.append(Finding(name, f"service {path.stem}", "(file)", f"the model has no service {path.stem!r} (services: {', '.join(repo.services)}); delete the file"))
    passed: list[str] = []
    versions = kubernetes_versions()
    for manifest in expected:
        path = repo.root / manifest.path
        if not path.is_file():
            findings.append(Finding(manifest.path, f"service {manifest.service}", "(file)", f"missing; run `invoke manifests --env {env.name}`"))
            continue
        try:
            committed = read_documents(path)
        except DeployError as error:
            findings.append(Finding(manifest.path, f"service {manifest.service}", "(file)", str(error)))
            continue
        before = len(findings)
        for document in committed:
            findings += schema_findings(manifest.path, document, versions)
            findings += restricted_findings(manifest.path, document)
        findings += drift_findings(manifest, committed)
        findings += registry_findings(manifest.path, committed)
        if len(findings) == before:
            passed.append(f"{manifest.path}: valid for Kubernetes {' and '.join(versions)}, restricted, matches the model and the registry")
    return [finding.line() for finding in findings], passed


def _resource(document: dict[str, Any]) -> str:
    if not isinstance(document, dict):
        return "(not a mapping)"
    return f"{document.get('kind', '(no kind)')} {(document.get('metadata') or {}).get('name', '(no name)')}"


def schema_findings(file: str, document: dict[str, Any], versions: tuple[str, ...]) -> list[Finding]:
    from kubernetes_validate import utils

    found = []
    for version in versions:
        try:
            utils.validate(document, version, strict=True)
        except utils.ValidationError as error:
            field = ".".join(str(part) for part in error.path) or "(document)"
            found.append(Finding(file, _resource(document), field, f"{error.message} (Kubernetes {version} schema)"))
        except (utils.SchemaNotFoundError, utils.InvalidSchemaError) as error:
            found.append(Finding(file, _resource(document), "apiVersion", f"{error.message} (Kubernetes {version})"))
        except (KeyError, TypeError, AttributeError):
            found.append(Finding(file, _resource(document), "(document)", "not a Kubernetes object (apiVersion and kind expected)"))
            break
    return found


def restricted_findings(file: str, document: dict[str, Any]) -> list[Finding]:  # noqa: C901 - one branch per rule of the Pod Security Standard, in the standard's order, so each reads against it
    """The Pod Security Standard "restricted" level (Kubernetes 1.30 rules) of a workload's pod."""
    if not isinstance(document, dict) or document.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"):
        return []
    prefix = "spec" if document["kind"] == "Pod" else "spec.template.spec"
    pod = document.get("spec") or {}
    if document["kind"] != "Pod":
        pod = ((pod.get("template") or {}).get("spec")) or {}
    resource = _resource(document)
    found: list[Finding] = []

    def bad(field: str, problem: str) -> None:
        found.append(Finding(file, resource, f"{prefix}.{field}", f"{problem} (Pod Security Standard restricted)"))

    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            bad(key, "must be unset or false")
    security = pod.get("securityContext") or {}
    for sysctl in security.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            bad("securityContext.sysctls", f"{sysctl.get('name')!r} is not a safe sysctl")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            bad(f"volumes[{volume.get('name')}]", f"{', '.join(sorted(kinds - _RESTRICTED_VOLUMES))} volumes are not allowed")
    pod_seccomp = (security.get("seccompProfile") or {}).get("type")
    containers = [("containers", c) for c in pod.get("containers") or []] + [("initContainers", c) for c in pod.get("initContainers") or []]
    for index, (group, container) in enumerate(containers):
        where = f"{group}[{index if group == 'containers' else index - len(pod.get('containers') or [])}]"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            bad(f"{where}.securityContext.privileged", "must be false")
        if context.get("allowPrivilegeEscalation") is not False:
            bad(f"{where}.securityContext.allowPrivilegeEscalation", f"must be false, found {context.get('allowPrivilegeEscalation', 'unset')}")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            bad(f"{where}.securityContext.capabilities.drop", f"must include ALL, found {capabilities.get('drop') or 'nothing'}")
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            bad(f"{where}.securityContext.capabilities.add", f"may add only NET_BIND_SERVICE, found {', '.join(sorted(added))}")
        non_root = context.get("runAsNonRoot", security.get("runAsNonRoot"))
        if non_root is not True:
            bad(f"{where}.securityContext.runAsNonRoot", f"must be true (here or in the pod's securityContext), found {non_root if non_root is not None else 'unset'}")
        for scope, values in ((f"{where}.securityContext", context), ("securityContext", security)):
            if values.get("runAsUser") == 0:
                bad(f"{scope}.runAsUser", "must not be 0 (root)")
        seccomp = (context.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad(f"{where}.securityContext.seccompProfile.type", f"must be RuntimeDefault or Localhost (here or in the pod's), found {seccomp or 'unset'}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                bad(f"{where}.ports", f"hostPort {port['hostPort']} is not allowed")
        # Not the restricted level's rule but these pods': the app writes only to /tmp.
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(Finding(file, resource, f"{prefix}.{where}.securityContext.readOnlyRootFilesystem", "must be true (wheelpipe's pods write only to their emptyDir at /tmp)"))
    return found


def drift_findings(manifest: Manifest, committed: list[dict[str, Any]]) -> list[Finding]:
    """What differs between the committed documents and what the model and the registry's
    digests say now, field by field (the first difference of each resource)."""
    found = []
    expected = {_resource(d): d for d in manifest.documents}
    there = {_resource(d): d for d in committed}
    for resource, document in expected.items():
        if resource not in there:
            found.append(Finding(manifest.path, resource, "(resource)", "missing from the committed file; run `invoke manifests`"))
            continue
        difference = first_difference(there[resource], document, "")
        if difference:
            field, was, now = difference
            found.append(Finding(manifest.path, resource, field or "(document)", f"committed {was}, the model and the registry say {now}; run `invoke manifests`"))
    for resource in there:
        if resource not in expected:
            found.append(Finding(manifest.path, resource, "(resource)", "committed, but the model renders no such resource; run `invoke manifests`"))
    return found


def first_difference(was: object, now: object, path: str) -> tuple[str, str, str] | None:
    if isinstance(was, dict) and isinstance(now, dict):
        for key in sorted(set(was) | set(now)):
            field = f"{path}.{key}" if path else key
            if key not in was:
                return field, "nothing", _short(now[key])
            if key not in now:
                return field, _short(was[key]), "nothing"
            difference = first_difference(was[key], now[key], field)
            if difference:
                return difference
        return None
    if isinstance(was, list) and isinstance(now, list) and len(was) == len(now):
        for index, (a, b) in enumerate(zip(was, now, strict=True)):
            difference = first_difference(a, b, f"{path}[{index}]")
            if difference:
                return difference
        return None
    return None if was == now and type(was) is type(now) else (path, _short(was), _short(now))


def _short(value: object) -> str:
    import json

    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 100 else f"{text[:97]}..."


def registry_findings(file: str, committed: list[dict[str, Any]]) -> list[Finding]:
    """Each image a committed pod pins must be a digest the registry has."""
    found = []
    for document in committed:
        if not isinstance(document, dict) or document.get("kind") != "Deployment":
            continue
        containers = ((((document.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
        for index, container in enumerate(containers):
            field = f"spec.template.spec.containers[{index}].image"
            image = str(container.get("image", ""))
            if "@sha256:" not in image:
                found.append(Finding(file, _resource(document), field, f"{image!r} is not pinned by digest (registry/name@sha256:...)"))
            elif not registry.has_manifest(image):
                found.append(Finding(file, _resource(document), field, f"the registry does not have {image}"))
    return found


def manifest_paths(repo: Repository, env: Environment) -> list[Path]:
    directory = repo.root / MANIFESTS_DIR / env.name
    return sorted(directory.glob("*.yaml")) if directory.is_dir() else []
