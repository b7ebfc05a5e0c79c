"""`invoke chart`: one Helm chart for the monorepo's services, rendering what `invoke manifests` writes.

deploy/chart/ holds Chart.yaml, values.yaml (one block per service: its digest-pinned image,
command, env, port or health command, user, resources, replicas) and one template that makes
each block a Deployment (and, with a port, a Service). The values are the ones the manifests
are rendered from (manifests.render), so `helm template deploy/chart` gives the very objects
deploy/manifests/<env>/ holds; a team changes an environment with `helm upgrade --set` or
another values file, never by editing the template. Every value reaches the template's output
through toJson, so no ':' or '#' or quote or newline in a value can change its structure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .deploy import DeployError, Environment
from .fsutil import write_if_changed
from .manifests import CONTAINER, DEPLOY_DIR, LIVENESS, MANAGED_BY, PORT_NAME, READINESS, REVISION_ANNOTATION, TMP_VOLUME, Manifest, dump
from .model import Repository

CHART_DIR = f"{DEPLOY_DIR}/chart"
TEMPLATE = "templates/services.yaml"
# SemVer 2, which a chart's version must be (helm lint refuses anything else).
_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True)


# The Deployment and Service of manifests.render_service, as a Go template over one values
# block; the constant parts are written from manifests' own constants.
_TEMPLATE = (
    """{{- /* Written by `invoke chart` from the repository model; do not edit. */ -}}
{{- range $name, $s := .Values.services }}
{{- $selector := dict "app.kubernetes.io/name" $name "app.kubernetes.io/part-of" $.Values.partOf }}
{{- $labels := merge (dict "app.kubernetes.io/version" $s.version "app.kubernetes.io/managed-by" "MANAGED_BY") $selector }}
{{- $user := dict "runAsNonRoot" true "runAsUser" $s.user "runAsGroup" $s.group }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name | toJson }}
  namespace: {{ $.Values.namespace | toJson }}
  labels: {{ $labels | toJson }}
  {{- if $s.revision }}
  annotations: {{ dict "REVISION" $s.revision | toJson }}
  {{- end }}
spec:
  replicas: {{ $s.replicas | toJson }}
  selector:
    matchLabels: {{ $selector | toJson }}
  strategy: {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}, "type": "RollingUpdate"}
  template:
    metadata:
      labels: {{ $labels | toJson }}
      {{- if $s.revision }}
      annotations: {{ dict "REVISION" $s.revision | toJson }}
      {{- end }}
    spec:
      automountServiceAccountToken: false
      securityContext: {{ merge (dict "seccompProfile" (dict "type" "RuntimeDefault")) $user | toJson }}
      containers:
        - name: "CONTAINER"
          image: {{ $s.image | toJson }}
          command: {{ $s.command | toJson }}
          env: {{ $s.env | toJson }}
          resources: {{ $s.resources | toJson }}
          securityContext: {{ merge (dict "allowPrivilegeEscalation" false "capabilities" (dict "drop" (list "ALL")) "readOnlyRootFilesystem" true) $user | toJson }}
          volumeMounts: [{"mountPath": "/tmp", "name": "TMP_VOLUME"}]
          {{- if $s.port }}
          ports: [{"containerPort": {{ $s.port | toJson }}, "name": "PORT_NAME", "protocol": "TCP"}]
          readinessProbe: {{ merge (dict "httpGet" (dict "path" $s.healthPath "port" "PORT_NAME")) (READINESS | fromJson) | toJson }}
          livenessProbe: {{ merge (dict "httpGet" (dict "path" $s.healthPath "port" "PORT_NAME")) (LIVENESS | fromJson) | toJson }}
          {{- else if $s.healthCommand }}
          readinessProbe: {{ merge (dict "exec" (dict "command" $s.healthCommand)) (READINESS | fromJson) | toJson }}
          livenessProbe: {{ merge (dict "exec" (dict "command" $s.healthCommand)) (LIVENESS | fromJson) | toJson }}
          {{- end }}
      volumes: [{"emptyDir": {}, "name": "TMP_VOLUME"}]
{{- if $s.port }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name | toJson }}
  namespace: {{ $.Values.namespace | toJson }}
  labels: {{ $labels | toJson }}
spec:
  selector: {{ $selector | toJson }}
  ports: [{"name": "PORT_NAME", "port": {{ $s.port | toJson }}, "protocol": "TCP", "targetPort": "PORT_NAME"}]
{{- end }}
{{- end }}
"""
    .replace("MANAGED_BY", MANAGED_BY)
    .replace("REVISION", REVISION_ANNOTATION)
    .replace("CONTAINER", CONTAINER)
    .replace("TMP_VOLUME", TMP_VOLUME)
    .replace("PORT_NAME", PORT_NAME)
    .replace("READINESS", _json(_json(READINESS)))
    .replace("LIVENESS", _json(_json(LIVENESS)))
)


def values(env: Environment, manifests: list[Manifest]) -> dict[str, Any]:
    """One block per service, read back from its rendered manifest: the chart cannot hold
    anything the manifests do not."""
    services = {}
    for manifest in manifests:
        deployment = next(d for d in manifest.documents if d["kind"] == "Deployment")
        metadata, spec = deployment["metadata"], deployment["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        block: dict[str, Any] = {
            "image": container["image"],
            "version": metadata["labels"]["app.kubernetes.io/version"],
            "revision": (metadata.get("annotations") or {}).get(REVISION_ANNOTATION, ""),
            "replicas": spec["replicas"],
            "command": container["command"],
            "env": container["env"],
            "resources": container["resources"],
            "user": pod["securityContext"]["runAsUser"],
            "group": pod["securityContext"]["runAsGroup"],
        }
        probe = container.get("readinessProbe") or {}
        if "httpGet" in probe:
            block["port"] = container["ports"][0]["containerPort"]
            block["healthPath"] = probe["httpGet"]["path"]
        elif "exec" in probe:
            block["healthCommand"] = probe["exec"]["command"]
        services[manifest.service] = block
    return {"namespace": env.namespace, "partOf": env.part_of, "services": services}


def chart_files(repo: Repository, env: Environment, manifests: list[Manifest]) -> dict[str, str]:
    """Every file of the chart, by its path under deploy/chart/."""
    if not _SEMVER.fullmatch(repo.release_version):
        msg = f"pyproject.toml: [tool.wheelpipe.release] version {repo.release_version!r} is not SemVer 2 (MAJOR.MINOR.PATCH), which a Helm chart's version must be"
        raise DeployError(msg)
    chart = {
        "apiVersion": "v2",
        "name": env.part_of,
        "description": f"The services of {env.part_of}, pinned by digest (written by `invoke chart` for the environment {env.name})",
        "type": "application",
        "version": repo.release_version,
        "appVersion": repo.release_version,
    }
    header = f"# Written by `invoke chart --env {env.name}` from the repository model and the registry's digests; do not edit.\n"
    return {
        "Chart.yaml": header + dump(chart),
        "values.yaml": header + dump(values(env, manifests)),
        TEMPLATE: _TEMPLATE,
    }


def write(repo: Repository, files: dict[str, str]) -> list[str]:
    lines = []
    for name, text in sorted(files.items()):
        written = write_if_changed(repo.root / CHART_DIR / name, text)
        lines.append(f"{CHART_DIR}/{name}: {'written' if written else 'unchanged'}")
    return lines
