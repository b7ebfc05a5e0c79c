"""What a deployment of the monorepo's services is, as a team sets it once.

Two tables of pyproject.toml files say it: a service's `[tool.wheelpipe.service] resources`
(its requests and limits wherever it runs), and the root's `[tool.wheelpipe.deploy.<env>]`,
one per environment (namespace, the registry its images are pulled from, replicas, and
overrides per service). The model (model.py) reads both through this module; manifests.py
and chart.py render them.

The other half is what the registry said: `invoke image --push` records, for each pushed
tag, the digest the registry reported and the image's user, in the pipeline's store
(.wheelhouse/pushed-images.json, next to the other records of images built here). Manifests
pin those digests; a tag never pushed from here has no record, and no manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PipelineError
from .fsutil import exclusive_lock, write_atomic
from .tomlvalues import matching, refuse_unknown_keys, shown


class DeployError(PipelineError):
    """A deploy table, an environment or a pushed image is not what a manifest needs."""


# What a service gets when neither it nor the environment says (documented in the README):
# enough for a small Python web process, and a memory limit so that a leak is a restart,
# not a node under pressure. No CPU limit: throttling a request-serving process hurts more
# than it protects, and requests already share the node fairly.
DEFAULT_REQUESTS = (("cpu", "100m"), ("memory", "128Mi"))
DEFAULT_LIMITS = (("memory", "256Mi"),)
RESOURCE_NAMES = ("cpu", "memory")
# A Kubernetes quantity as a team writes one: a number and an optional suffix.
_QUANTITY = re.compile(r"(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
# RFC 1123 label: what a namespace, a Service's and a container's name must be.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# An environment variable name a pod may set.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The default environment's namespace when the table sets none.
DEFAULT_NAMESPACE = "default"
_ENVIRONMENT_KEYS = ("namespace", "registry", "replicas", "resources", "part-of", "services")
_SERVICE_KEYS = ("replicas", "resources", "env")


@dataclass(frozen=True)
class Resources:
    """Requests and limits, each a sorted tuple of (resource, quantity); unset ones inherit."""

    requests: tuple[tuple[str, str], ...] = ()
    limits: tuple[tuple[str, str], ...] = ()

    def over(self, base: Resources) -> Resources:
        """These values, and base's for what these do not set."""
        return Resources(_merged(base.requests, self.requests), _merged(base.limits, self.limits))


DEFAULT_RESOURCES = Resources(DEFAULT_REQUESTS, DEFAULT_LIMITS)


def _merged(base: tuple[tuple[str, str], ...], top: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**dict(base), **dict(top)}.items()))


@dataclass(frozen=True)
class ServiceOverride:
    """[tool.wheelpipe.deploy.<env>.services.<service>]: what one environment changes of one service."""

    replicas: int | None = None
    resources: Resources = Resources()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Environment:
    """[tool.wheelpipe.deploy.<env>]."""

    name: str
    namespace: str = DEFAULT_NAMESPACE
    registry: str = ""  # the image prefix its images were pushed under, e.g. registry.example.com/team/
    replicas: int = 1
    resources: Resources = Resources()
    part_of: str = ""  # app.kubernetes.io/part-of; default: the namespace
    services: dict[str, ServiceOverride] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"[tool.wheelpipe.deploy.{self.name}]"

    def override(self, service: str) -> ServiceOverride:
        return self.services.get(service, ServiceOverride())


def parse_resources(value: object, where: str) -> Resources:
    """`resources = { requests = { cpu = "100m", memory = "128Mi" }, limits = { memory = "256Mi" } }`."""
    if not isinstance(value, dict):
        msg = f"{where} must be a table with requests and/or limits, found {shown(value)}"
        raise DeployError(msg)
    parts: dict[str, tuple[tuple[str, str], ...]] = {}
    refuse_unknown_keys(value, ("requests", "limits"), where, DeployError)
    for key, table in value.items():
        if not isinstance(table, dict):
            msg = f"{where} {key} must be a table of cpu and/or memory quantities, found {shown(table)}"
            raise DeployError(msg)
        found = []
        for name, quantity in table.items():
            if name not in RESOURCE_NAMES:
                msg = f"{where} {key} has no resource {name!r} (known: {', '.join(RESOURCE_NAMES)})"
                raise DeployError(msg)
            text = str(quantity) if isinstance(quantity, int) and not isinstance(quantity, bool) else quantity
            if not (isinstance(text, str) and _QUANTITY.fullmatch(text)):
                msg = f'{where} {key} {name} must be a Kubernetes quantity such as "250m", "1" or "256Mi", found {shown(quantity)}'
                raise DeployError(msg)
            found.append((name, text))
        parts[key] = tuple(sorted(found))
    return Resources(parts.get("requests", ()), parts.get("limits", ()))


def parse_environments(table: dict[str, Any], where: str = "pyproject.toml") -> dict[str, Environment]:
    """Every [tool.wheelpipe.deploy.<env>] of the root pyproject.toml."""
    environments = {}
    for name, body in table.items():
        key = f"[tool.wheelpipe.deploy.{name}]"
        if not (isinstance(name, str) and DNS_LABEL.fullmatch(name)):
            msg = f"{where}: {key}: an environment's name must be a DNS-1123 label (lowercase letters, digits and '-'), found {name!r}"
            raise DeployError(msg)
        if not isinstance(body, dict):
            msg = f"{where}: {key} must be a table (namespace, registry, replicas, resources, part-of, services), found {shown(body)}"
            raise DeployError(msg)
        environments[name] = _environment(name, body, f"{where}: {key}")
    return environments


def _environment(name: str, body: dict[str, Any], where: str) -> Environment:
    refuse_unknown_keys(body, _ENVIRONMENT_KEYS, where, DeployError)
    namespace = matching(body, "namespace", DEFAULT_NAMESPACE, DNS_LABEL, where=where, expected="a DNS-1123 label (lowercase letters, digits and '-', at most 63)", error=DeployError)
    registry = body.get("registry", "")
    if not (isinstance(registry, str) and (registry == "" or _registry_prefix(registry))):
        msg = f"{where} registry must be the image prefix the images were pushed under, a registry host first, e.g. \"registry.example.com/team/\", found {shown(registry)}"
        raise DeployError(msg)
    part_of = matching(body, "part-of", namespace, DNS_LABEL, where=where, expected="a DNS-1123 label (the app.kubernetes.io/part-of label)", error=DeployError)
    services = body.get("services", {})
    if not isinstance(services, dict):
        msg = f"{where} services must be a table of tables, one per service, found {shown(services)}"
        raise DeployError(msg)
    return Environment(
        name=name,
        namespace=namespace,
        registry=registry,
        replicas=_replicas(body.get("replicas", 1), f"{where} replicas"),
        resources=parse_resources(body["resources"], f"{where} resources") if "resources" in body else Resources(),
        part_of=part_of,
        services={service: _override(override, f"{where[:-1]}.services.{service}]") for service, override in services.items()},
    )


def _override(body: object, where: str) -> ServiceOverride:
    if not isinstance(body, dict):
        msg = f"{where} must be a table (replicas, resources, env), found {shown(body)}"
        raise DeployError(msg)
    refuse_unknown_keys(body, _SERVICE_KEYS, where, DeployError)
    env = body.get("env", {})
    if not isinstance(env, dict):
        msg = f"{where} env must be a table of NAME = \"value\", found {shown(env)}"
        raise DeployError(msg)
    for variable, value in env.items():
        if not _ENV_NAME.fullmatch(variable) or not isinstance(value, str):
            msg = f"{where} env: expected NAME = \"a string\" (NAME of letters, digits and '_'), found {variable} = {shown(value)}"
            raise DeployError(msg)
    return ServiceOverride(
        replicas=_replicas(body["replicas"], f"{where} replicas") if "replicas" in body else None,
        resources=parse_resources(body["resources"], f"{where} resources") if "resources" in body else Resources(),
        env=tuple(sorted(env.items())),
    )


def _replicas(value: object, where: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000):
        msg = f"{where} must be a number of pods (0-1000), found {shown(value)}"
        raise DeployError(msg)
    return value


def _registry_prefix(prefix: str) -> bool:
    """A prefix ending in '/' whose first part is a registry host, as Docker reads one."""
    first, slash, _ = prefix.partition("/")
    return bool(slash) and prefix.endswith("/") and ("." in first or ":" in first or first == "localhost") and " " not in prefix


# An OCI repository path: lowercase components joined by '/' (the distribution spec's grammar).
_OCI_PATH = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_OCI_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?")


@dataclass(frozen=True)
class ChartRegistry:
    """[tool.wheelpipe.release] chart-registry: where a release pushes its Helm chart,
    oci://<host>/<path> (the chart's name and version are appended, as `helm push` does)."""

    host: str
    path: str

    @property
    def remote(self) -> str:
        return f"oci://{self.host}/{self.path}"

    def repository(self, chart: str) -> str:
        """The repository a chart of this name is pushed to, under the host."""
        return f"{self.path}/{chart}"


def parse_chart_registry(value: object, where: str) -> ChartRegistry:
    expected = f"{where} must be oci://<registry host>/<path> (e.g. oci://registry.example.com/team/charts), found {shown(value)}"
    if not isinstance(value, str) or not value.startswith("oci://"):
        raise DeployError(expected)
    host, slash, path = value.removeprefix("oci://").rstrip("/").partition("/")
    if "@" in host:
        # A credential in pyproject.toml would be committed: helm keeps its own (helm registry login).
        msg = f"{where} holds a user name or password ({host.partition('@')[0]}@...); log in with `helm registry login` instead, so no credential is committed"
        raise DeployError(msg)
    if not (slash and _OCI_HOST.fullmatch(host) and _OCI_PATH.fullmatch(path)):
        raise DeployError(expected)
    return ChartRegistry(host, path)


# --- what the registry said when an image was pushed ---------------------------------------

PUSH_RECORD = "pushed-images.json"


@dataclass(frozen=True)
class Pushed:
    """One pushed tag: the digest the registry reported, and what the image's config says
    that a manifest needs (its user; the commit it was built from)."""

    tag: str  # registry/path/name:version
    digest: str  # sha256:...
    user: str  # Config.User, e.g. "10001:10001"
    revision: str  # the org.opencontainers.image.revision label

    @property
    def repository(self) -> str:
        return self.tag.rpartition(":")[0]

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def numeric_user(self, where: str) -> tuple[int, int]:
        return numeric_user(self.user, self.tag, where)


def numeric_user(user_group: str, image: str, where: str) -> tuple[int, int]:
    """(uid, gid) of an image's USER: numbers a pod's runAsUser/runAsGroup can state, and not
    root's, or the pod cannot run as non-root."""
    user, _, group = user_group.partition(":")
    if not (user.isdigit() and (group or user).isdigit()):
        msg = f"{where}: the image {image} runs as user {user_group!r}; a restricted pod needs a numeric USER uid:gid in its Dockerfile, e.g. USER 10001:10001"
        raise DeployError(msg)
    uid, gid = int(user), int(group or user)
    if uid == 0:
        msg = f"{where}: the image {image} runs as root (USER {user_group or '(unset)'}); a restricted pod must run as a non-root uid"
        raise DeployError(msg)
    return uid, gid


def record_path(store: Path) -> Path:
    return store / PUSH_RECORD


def load_pushed(store: Path) -> dict[str, Pushed]:
    """Every recorded push, by tag; {} when nothing was pushed from here."""
    path = record_path(store)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {tag: Pushed(tag, entry["digest"], entry["user"], entry.get("revision", "")) for tag, entry in data["pushed"].items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        msg = f"{path.name} in the wheelhouse store is damaged ({type(error).__name__}: {error}); push the images again with `invoke image --all --push`"
        raise DeployError(msg) from None


def record_pushed(store: Path, pushed: Pushed) -> None:
    """Add (or replace) one push in the record; pushes from two runs at once are serialized."""
    with exclusive_lock(store / f".{PUSH_RECORD}.lock", on_wait=lambda: None):
        known = load_pushed(store)
        known[pushed.tag] = pushed
        body = {"pushed": {tag: {"digest": p.digest, "user": p.user, "revision": p.revision} for tag, p in sorted(known.items())}}
        write_atomic(record_path(store), json.dumps(body, indent=2, sort_keys=True) + "\n")


def pushed_from_inspect(tag: str, digest: str, config: dict[str, Any]) -> Pushed:
    """The record of a push, from the digest and `docker image inspect` of the pushed tag."""
    settings = config.get("Config") or {}
    labels = settings.get("Labels") or {}
    return Pushed(tag, digest, str(settings.get("User") or ""), str(labels.get("org.opencontainers.image.revision", "")))
