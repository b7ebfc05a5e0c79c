"""How an image starts and probes its service, as the service's team declared it.

The service's [tool.wheelpipe.service] (model.HttpService, model.WorkerService) becomes the
files the image build's app stage installs: `service`, the entrypoint, which execs the
declared command (a console script of the venv, its own or a dependency's such as uvicorn, or
`python -m module`); `service-health`, the health check's command (an http service's: the
standard-library probe of its port and path; a worker's: its declared health command); and
service.env, which tells the app stage what to check before it installs them. Nothing here
assumes the demo's runtime: the app is started once, by its own command.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from .model import PORT_PLACEHOLDER, PYTHON_WORDS, HttpService, ServiceSettings

VENV_BIN = PurePosixPath("/srv/venv/bin")
# Where the app stage puts the probe: outside the venv, which holds what the wheels installed.
HEALTH_PROBE = PurePosixPath("/srv/healthprobe.py")
# A Python object reference a server command names (uvicorn's and gunicorn's APP argument):
# module.path:attribute, a factory call allowed.
_OBJECT_REFERENCE = re.compile(r"([A-Za-z_][\w.]*):([A-Za-z_][\w.]*)(\(\))?")


@dataclass(frozen=True)
class Launch:
    """The files of first-party/ that say how the image runs the service."""

    service_env: str  # shell assignments the app stage sources, every value quoted
    entrypoint: str  # /srv/venv/bin/service
    health: str | None  # /srv/venv/bin/service-health, None when the image has no health check


def launch(settings: ServiceSettings) -> Launch:
    values = {
        "SERVICE_KIND": settings.kind,
        "SERVICE_PROGRAM": settings.command[0],
        "SERVICE_COMMAND": shlex.join(settings.command),
        # For the import check: words without spaces (_OBJECT_REFERENCE), so one line holds them.
        "SERVICE_REFERENCES": " ".join(app_references(settings)),
    }
    health: str | None = None
    if isinstance(settings, HttpService):
        values["SERVICE_PORT"] = str(settings.port)
        probe = [str(VENV_BIN / "python"), "-I", "-B", str(HEALTH_PROBE), settings.port_env, str(settings.port), settings.health_path]
        health = _script(f"GET {settings.health_path} on the service's port", shlex.join(probe))
    elif settings.health_command:
        values["HEALTH_PROGRAM"] = settings.health_command[0]
        values["HEALTH_COMMAND"] = shlex.join(settings.health_command)
        health = _script("the worker's declared health command", _exec_line(settings.health_command, None))
    port_env = settings.port_env if isinstance(settings, HttpService) else None
    entrypoint = _script("the service's declared command; docker run's arguments follow it", _exec_line(settings.command, port_env) + ' "$@"')
    service_env = "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    return Launch(service_env, entrypoint, health)


def _script(what: str, line: str) -> str:
    # exec: the program replaces the shell, so it is PID 1 and gets SIGTERM itself.
    return f"#!/bin/sh\n# Written by wheelpipe from [tool.wheelpipe.service]: {what}.\nexec {line}\n"


def _exec_line(words: tuple[str, ...], port_env: str | None) -> str:
    """The command as one shell line: its program from the venv's bin/ (never another on the
    PATH), every word quoted, and {port} as the value of the service's port variable when it
    runs, which the image sets to the declared port (and an orchestrator may set to another)."""
    program = str(VENV_BIN / words[0])
    return " ".join([shlex.quote(program), *(_word(word, port_env) for word in words[1:])])


def _word(word: str, port_env: str | None) -> str:
    if port_env is None or PORT_PLACEHOLDER not in word:
        return shlex.quote(word)
    return f'"${{{port_env}}}"'.join(shlex.quote(part) if part else "" for part in word.split(PORT_PLACEHOLDER))


def environment(settings: ServiceSettings) -> dict[str, str]:
    """What the image's configuration sets for the service: an http service's port, in the
    variable its code reads."""
    return {settings.port_env: str(settings.port)} if isinstance(settings, HttpService) else {}


def app_references(settings: ServiceSettings) -> list[str]:
    """The module:object a server such as uvicorn or gunicorn is told to serve, which the
    import check imports (`python -m`'s module it finds from the command itself)."""
    words = settings.command
    if words[0] in PYTHON_WORDS:
        return []
    return [word for word in words[1:] if _OBJECT_REFERENCE.fullmatch(word)]
