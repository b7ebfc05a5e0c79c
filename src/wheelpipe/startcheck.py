"""`invoke verify-image`'s last proof: the image, started as an orchestrator starts it, serves.

Reading an image's files proves what is installed, and the build's import check that the code
imports; neither proves the app starts and answers. So the image runs once, as a restricted
pod would run it (its own user, a read-only root with a tmpfs at /tmp, every capability
dropped, no privilege escalation), and its health check runs inside it, as Docker's
HEALTHCHECK or a kubelet's exec probe would; an http service must then also answer the same
GET from outside the container on its port, as a kubelet's httpGet probe and a Service reach
it (an app listening on 127.0.0.1 only passes a probe from inside and nothing else).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

from . import healthprobe, manifests, podrun
from .console import report
from .deploy import DEFAULT_RESOURCES, numeric_user
from .docker import Docker
from .errors import DockerError, ToolError
from .model import HttpService, ServiceSettings

# How long a service may take to start answering, and how often it is asked meanwhile.
START_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.25
# A worker without a health check counts as started when it still runs after this long: one
# that cannot start (a bad setting, a missing module) exits within it.
WORKER_SETTLE_SECONDS = 2.0


def timeout_seconds(value: object) -> float:
    """--start-timeout: a positive number of seconds."""
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 3600:
        msg = f"invoke verify-image --start-timeout: expected a number of seconds (above 0, below 3600), found {value!r}"
        raise DockerError(msg)
    return seconds


@dataclass(frozen=True)
class State:
    running: bool
    exit_code: int
    address: str  # the container's address on the engine's bridge network


def check_started(docker: Docker, image: str, service: str, settings: ServiceSettings, timeout: float = START_TIMEOUT_SECONDS) -> str:
    """Start the image, wait until its health check passes (an http service: and its port
    answers from outside), stop it; one line saying what passed, else DockerError saying why."""
    report.step(f"starting {image} as a restricted pod would, until its health check passes")
    run = restricted_run(docker, image, service, settings)
    container = docker.run("run", "--detach", *run.run_args, what=f"starting a container of {image}").stdout.strip()
    try:
        return _wait(docker, container, service, settings, run, timeout)
    finally:
        with contextlib.suppress(ToolError):
            docker.run("rm", "--force", "--volumes", container, what="removing the started container")


def restricted_run(docker: Docker, image: str, service: str, settings: ServiceSettings) -> podrun.ContainerRun:
    """The image run from the very pod spec `invoke manifests` writes (manifests.pod_spec), its
    user the one the image's config names, translated by the one translation (podrun)."""
    user = str((docker.inspect(image).get("Config") or {}).get("User") or "")
    uid, gid = numeric_user(user, image, service)
    resources = settings.resources.over(DEFAULT_RESOURCES)
    pod = manifests.pod_spec(service, settings, image, uid, gid, {}, manifests.resources_spec(resources.requests, resources.limits))
    return podrun.container_run(pod, service)


def _wait(docker: Docker, container: str, service: str, settings: ServiceSettings, run: podrun.ContainerRun, timeout: float) -> str:
    started = time.monotonic()
    deadline = started + timeout
    health = isinstance(settings, HttpService) or bool(settings.health_command)
    last = "it was never asked"
    while True:
        state = _state(docker, container)
        if not state.running:
            msg = f"{service}: the container exited with status {state.exit_code} before its health check passed{_log_tail(docker, container)}"
            raise DockerError(msg)
        if not health:
            if time.monotonic() - started >= WORKER_SETTLE_SECONDS:
                return f"{service}: started, and still running after {WORKER_SETTLE_SECONDS:g} s (a worker without a health command)"
        else:
            probe = docker.run("exec", container, "service-health", what="running the health check in the container", check=False)
            if probe.returncode == 0:
                break
            said = (probe.stderr.strip() or probe.stdout.strip()).splitlines()
            last = said[-1] if said else f"exit {probe.returncode}"
            if probe.returncode == healthprobe.SETTLED_EXIT and isinstance(settings, HttpService):
                msg = f"{service}: the health check failed, and waiting will not make it pass ({last}): is health-path {settings.health_path!r} a path the app serves?{_log_tail(docker, container)}"
                raise DockerError(msg)
        if time.monotonic() >= deadline:
            msg = f"{service}: the health check did not pass within {timeout:g} s of the start (last: {last}){_log_tail(docker, container)}"
            raise DockerError(msg)
        time.sleep(POLL_SECONDS)
    took = time.monotonic() - started
    if not isinstance(settings, HttpService):
        return f"{service}: started, and its health command passed after {took:.1f} s"
    failure = next(filter(None, (podrun.http_get(state.address, port, path) for port, path in run.http_probes)), None)
    if failure:
        msg = (
            f"{service}: the health check passes inside the container, but {failure} from outside it: the service must listen on "
            f"every address (0.0.0.0), not 127.0.0.1 only, on port {settings.port} (the value of {settings.port_env})"
        )
        raise DockerError(msg)
    return f"{service}: started, and GET {settings.health_path} on port {settings.port} answered from inside and outside the container after {took:.1f} s"


# Every file that runs with its owner's or group's privileges, whoever starts it.
_SETUID_FILES = "find / -xdev -type f -perm /6000 2>/dev/null | sort"


def check_unprivileged(docker: Docker, image: str, base: str) -> str:
    """The image's user is not root once resolved in the image (a name can be uid 0), and the
    image holds no setuid or setgid file its base does not: a recipe can add one (`chmod u+s`)
    that a process of the service's user would run as root. One line, else DockerError."""
    report.step(f"checking who {image} runs as, and its setuid and setgid files against {base}")
    if not docker.image_id(base):
        # `docker run` would pull it: verification reaches no registry.
        msg = f"base image {base} is not present, and {image}'s setuid and setgid files are compared with it's: pass the base it was built from (--base-image)"
        raise DockerError(msg)
    uid = docker.run("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u", what=f"running id in {image}").stdout.strip()
    if uid in ("", "0"):
        msg = f"{image} runs as uid {uid or '?'} (root): the image must run as an unprivileged user"
        raise DockerError(msg)

    def setuid_files(reference: str) -> set[str]:
        argv = ("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh", reference, "-c", _SETUID_FILES)
        return set(docker.run(*argv, what=f"listing the setuid and setgid files of {reference}").stdout.split())

    added = sorted(setuid_files(image) - setuid_files(base))
    if added:
        msg = f"{image} holds setuid or setgid files its base image {base} does not: {', '.join(added)}"
        raise DockerError(msg)
    return f"{image}: runs as uid {uid}, and holds no setuid or setgid file beyond its base image's"


def _state(docker: Docker, container: str) -> State:
    found = docker.run("container", "inspect", container, what="inspecting the started container").stdout
    (record,) = json.loads(found)
    networks = (record.get("NetworkSettings") or {}).get("Networks") or {}
    address = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), "")
    return State(bool(record["State"]["Running"]), int(record["State"]["ExitCode"]), address)


def _log_tail(docker: Docker, container: str) -> str:
    line = docker.last_log_line(container)
    return f"; its log ends: {line}" if line else ""
