"""A pod's container run under Docker exactly as its spec says, and probed as a kubelet would.

No Kubernetes engine runs where the pipeline is tested, so the one translation of a pod spec
into `docker run` lives here, and everything that starts a service "as a pod would" goes
through it: verify-image's start (startcheck.py) and the test that runs every manifest
`invoke manifests` writes. A field of the spec this translation does not know is an error,
never ignored: a manifest can then not say more than what was proven by running it.

The kubelet's behaviour reproduced here: the command replaces the image's ENTRYPOINT, with
$(VAR) references expanded from the container's env ($$ is a literal $); runAsUser and
runAsGroup are the process's ids; readOnlyRootFilesystem is a read-only root; an emptyDir is
a writable, empty directory (a tmpfs here); capabilities dropped and no privilege escalation
(no_new_privs) as stated; an exec probe runs in the container as its user; an httpGet probe
connects to the pod's address from outside, on the port the spec names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import healthprobe
from .deploy import DeployError

# Every field of a container spec (and of its pod spec) the translation carries out, or which
# Docker does not need to run one container (ports are reached on the container's address).
_CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "ports", "livenessProbe", "readinessProbe", "resources", "securityContext", "volumeMounts", "imagePullPolicy"}
_POD_FIELDS = {"containers", "securityContext", "volumes", "automountServiceAccountToken"}
_SECURITY_FIELDS = {"runAsNonRoot", "runAsUser", "runAsGroup", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "capabilities", "seccompProfile"}
_VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class ContainerRun:
    """One container of a pod spec, as Docker runs it."""

    image: str
    run_args: tuple[str, ...]  # `docker run` options, the image and its arguments
    exec_probes: tuple[tuple[str, ...], ...]  # each exec probe's command
    http_probes: tuple[tuple[int, str], ...]  # each httpGet probe's (port, path)


def container_run(pod: dict[str, Any], where: str) -> ContainerRun:  # noqa: C901 - one branch per pod-spec field the translation carries out or refuses, in the spec's order
    """The `docker run` of the pod's one container, and its probes."""
    _known(pod, _POD_FIELDS, f"{where}: the pod spec")
    containers = pod.get("containers") or []
    if len(containers) != 1:
        msg = f"{where}: the pod spec has {len(containers)} containers; a pod of wheelpipe runs exactly one"
        raise DeployError(msg)
    (container,) = containers
    _known(container, _CONTAINER_FIELDS, f"{where}: the container spec")
    security = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
    _known(security, _SECURITY_FIELDS, f"{where}: the securityContext")
    options: list[str] = []
    if "runAsUser" in security:
        user = str(security["runAsUser"])
        options += ["--user", f"{user}:{security['runAsGroup']}" if "runAsGroup" in security else user]
    if security.get("runAsNonRoot") and str(security.get("runAsUser", "")) in ("", "0"):
        msg = f"{where}: runAsNonRoot without a non-zero runAsUser: the kubelet would refuse to start it unless the image's user is numeric and not root"
        raise DeployError(msg)
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    for capability in (security.get("capabilities") or {}).get("drop", []):
        options += ["--cap-drop", capability]
    for capability in (security.get("capabilities") or {}).get("add", []):
        options += ["--cap-add", capability]
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    seccomp = (security.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp != "RuntimeDefault":  # Docker's own default profile is the runtime's default
        msg = f"{where}: seccompProfile {seccomp!r}: only RuntimeDefault is run here"
        raise DeployError(msg)
    volumes = {}
    for volume in pod.get("volumes") or []:
        if set(volume) != {"name", "emptyDir"}:
            msg = f"{where}: volume {volume.get('name')!r} is not an emptyDir, the only kind run here"
            raise DeployError(msg)
        volumes[volume["name"]] = volume
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in volumes or set(mount) - {"name", "mountPath"}:
            msg = f"{where}: volumeMount {mount!r} names no emptyDir of the pod, or says more than name and mountPath"
            raise DeployError(msg)
        # An emptyDir starts empty and writable by the pod's user: a tmpfs does both.
        options += ["--tmpfs", mount["mountPath"]]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:  # a container over it is killed, as the kubelet's cgroup would
        options += ["--memory", str(quantity_bytes(limits["memory"]))]
    if "cpu" in limits:
        options += ["--cpus", f"{quantity_cores(limits['cpu']):g}"]
    env = {item["name"]: item["value"] for item in container.get("env") or []}
    for name, value in env.items():
        options += ["--env", f"{name}={value}"]
    words = [expand(word, env) for word in (container.get("command") or [])]
    arguments = [expand(word, env) for word in (container.get("args") or [])]
    if words:
        options += ["--entrypoint", words[0]]
        arguments = words[1:] + arguments
    ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if "name" in p}
    exec_probes, http_probes = [], []
    for key in ("readinessProbe", "livenessProbe"):
        probe = container.get(key)
        if not probe:
            continue
        if "exec" in probe:
            exec_probes.append(tuple(probe["exec"]["command"]))
        elif "httpGet" in probe:
            port = probe["httpGet"]["port"]
            number = ports.get(port) if isinstance(port, str) else int(port)
            if number is None:
                msg = f"{where}: {key} httpGet port {port!r} names no port of the container"
                raise DeployError(msg)
            http_probes.append((number, probe["httpGet"].get("path", "/")))
        else:
            msg = f"{where}: {key} is neither exec nor httpGet, the probes run here"
            raise DeployError(msg)
    image = container["image"]
    return ContainerRun(image, (*options, image, *arguments), tuple(dict.fromkeys(exec_probes)), tuple(dict.fromkeys(http_probes)))


def expand(word: str, env: dict[str, str]) -> str:
    """$(VAR) as the kubelet expands it in command and args: the container's variable, or left
    as written when it has none; $$ is a literal $."""

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        found: str = env.get(match.group(1), match.group(0))
        return found

    return _VARIABLE.sub(value, word)


_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(text: str) -> int:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", text)
    if not found or found.group(2) not in _SUFFIXES:
        msg = f"memory limit {text!r}: expected bytes with a suffix of {', '.join(s for s in _SUFFIXES if s)} (or none)"
        raise DeployError(msg)
    return int(float(found.group(1)) * _SUFFIXES[found.group(2)])


def quantity_cores(text: str) -> float:
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def http_get(address: str, port: int, path: str) -> str | None:
    """A kubelet's httpGet from outside the container: None when it answers 2xx or 3xx."""
    if not address:
        return "the container has no address on the engine's network to GET"
    failed = healthprobe.http_get(address, port, path, timeout=5)
    return failed.said if failed else None


def _known(spec: dict[str, Any], fields: set[str], where: str) -> None:
    unknown = sorted(set(spec) - fields)
    if unknown:
        msg = f"{where} sets {', '.join(unknown)}, which the translation to docker run does not carry out (podrun.py): it could not be proven by running"
        raise DeployError(msg)
