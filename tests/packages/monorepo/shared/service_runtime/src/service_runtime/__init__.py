"""The runtime every HTTP service of the monorepo shares: ``<service> [serve|healthcheck]``.

A service declares a :class:`ServiceSpec` (its console script, port and host variables and
a WSGI application factory) and its console script calls :func:`run_service`. gunicorn is
imported only when serving, never by importing this package or by the healthcheck.
"""

from service_runtime.cli import run_service
from service_runtime.healthcheck import HEALTHCHECK_PATH, HEALTHCHECK_TIMEOUT_SECONDS, healthcheck
from service_runtime.settings import (
    DEFAULT_HOST,
    DEFAULT_WORKERS,
    MAX_WORKERS,
    WORKERS_ENV,
    int_from_env,
    read_host,
    read_port,
    read_workers,
)
from service_runtime.spec import ServiceSpec, WSGIApp

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_WORKERS",
    "HEALTHCHECK_PATH",
    "HEALTHCHECK_TIMEOUT_SECONDS",
    "MAX_WORKERS",
    "WORKERS_ENV",
    "ServiceSpec",
    "WSGIApp",
    "healthcheck",
    "int_from_env",
    "read_host",
    "read_port",
    "read_workers",
    "run_service",
]
