"""Command line entry point: ``user-manager [serve|healthcheck]``."""

import argparse
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

PROG = "user-manager"
PORT_ENV = "USER_MANAGER_PORT"
HOST_ENV = "USER_MANAGER_HOST"
WORKERS_ENV = "WEB_CONCURRENCY"
DEFAULT_PORT = 8002
DEFAULT_HOST = "0.0.0.0"
DEFAULT_WORKERS = 2
HEALTHCHECK_TIMEOUT_SECONDS = 3.0


def _int_from_env(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        print(
            f"{PROG}: error: {name} must be an integer from {minimum} to {maximum}, got {raw!r}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return value


def read_port() -> int:
    return _int_from_env(PORT_ENV, DEFAULT_PORT, 1, 65535)


def read_workers() -> int:
    return _int_from_env(WORKERS_ENV, DEFAULT_WORKERS, 1, 1024)


def healthcheck(port: int, timeout: float = HEALTHCHECK_TIMEOUT_SECONDS) -> int:
    """Return 0 if the local server answers ``GET /healthz`` with 200, else 1."""
    url = f"http://127.0.0.1:{port}/healthz"
    # An HTTP(S)_PROXY meant for outbound traffic must not intercept a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        error.close()
        status = error.code
    except (OSError, http.client.HTTPException) as error:
        print(f"{PROG}: healthcheck: {url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{PROG}: healthcheck: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


def serve(bind: str, workers: int) -> None:
    # Imported late: gunicorn parses WEB_CONCURRENCY when imported and would crash
    # with a traceback before read_workers() could report a bad value. It also
    # spares the frequently run healthcheck the import.
    from user_manager.gunicorn_app import GunicornApplication

    GunicornApplication(bind=bind, workers=workers).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=f"Serve the user manager with gunicorn on ${PORT_ENV} "
        f"(default {DEFAULT_PORT}), or probe a running one.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "healthcheck"],
        help="serve (default) or healthcheck: exit 0 if GET /healthz on 127.0.0.1 answers 200",
    )
    args = parser.parse_args(argv)

    port = read_port()
    if args.command == "healthcheck":
        return healthcheck(port)
    host = os.environ.get(HOST_ENV, DEFAULT_HOST)
    # gunicorn only tells an IPv6 address from the port when it is bracketed.
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    serve(f"{host}:{port}", read_workers())
    return 0
