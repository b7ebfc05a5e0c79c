"""The command line every service's console script runs: ``<prog> [serve|healthcheck]``."""

import argparse
from collections.abc import Callable, Sequence

from service_runtime.healthcheck import healthcheck
from service_runtime.settings import read_host, read_port, read_workers
from service_runtime.spec import ServiceSpec, WSGIApp


def serve(app_factory: Callable[[], WSGIApp], bind: str, workers: int) -> None:
    # Imported late: gunicorn parses WEB_CONCURRENCY when imported and would crash
    # with a traceback before read_workers() could report a bad value. It also
    # spares the frequently run healthcheck the import.
    from service_runtime.gunicorn_app import GunicornApplication

    GunicornApplication(app_factory, bind=bind, workers=workers).run()


def build_parser(spec: ServiceSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=spec.prog,
        description=f"Serve the {spec.title} with gunicorn on ${spec.port_env} "
        f"(default {spec.default_port}), or probe a running one.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "healthcheck"],
        help="serve (default) or healthcheck: exit 0 if GET /healthz on 127.0.0.1 answers 200",
    )
    return parser


def run_service(spec: ServiceSpec, argv: Sequence[str] | None = None) -> int:
    """Serve the service with gunicorn (the default) or probe a running one; the exit status."""
    args = build_parser(spec).parse_args(argv)

    port = read_port(spec)
    if args.command == "healthcheck":
        return healthcheck(port, prog=spec.prog)
    serve(spec.app_factory, f"{read_host(spec)}:{port}", read_workers(spec))
    return 0
