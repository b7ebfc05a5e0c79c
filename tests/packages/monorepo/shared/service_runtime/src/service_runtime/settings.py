"""The serving settings a service reads from its environment.

A bad value stops the command with one line naming the variable, and exit status 2
(argparse's status for a usage error), before anything is started or probed.
"""

import os
import sys

from service_runtime.spec import ServiceSpec

# gunicorn's own variable: it reads it too, when imported.
WORKERS_ENV = "WEB_CONCURRENCY"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_WORKERS = 2
MAX_WORKERS = 1024


def int_from_env(prog: str, name: str, default: int, minimum: int, maximum: int) -> int:
    """``$name`` as an integer from minimum to maximum, ``default`` when unset."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        print(
            f"{prog}: error: {name} must be an integer from {minimum} to {maximum}, got {raw!r}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return value


def read_port(spec: ServiceSpec) -> int:
    return int_from_env(spec.prog, spec.port_env, spec.default_port, 1, 65535)


def read_workers(spec: ServiceSpec) -> int:
    return int_from_env(spec.prog, WORKERS_ENV, DEFAULT_WORKERS, 1, MAX_WORKERS)


def read_host(spec: ServiceSpec) -> str:
    """The host to bind, as gunicorn's ``bind`` wants it."""
    host = os.environ.get(spec.host_env, DEFAULT_HOST)
    # gunicorn only tells an IPv6 address from the port when it is bracketed.
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host
