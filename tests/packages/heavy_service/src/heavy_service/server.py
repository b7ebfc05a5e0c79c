"""Command line entry point: ``heavy-service [serve|healthcheck]``, run by service_runtime."""

from collections.abc import Sequence

from service_runtime import ServiceSpec, run_service

from heavy_service import create_app

# prog, port_env and default_port must equal [tool.wheelpipe.service] in pyproject.toml.
SPEC = ServiceSpec(
    prog="heavy-service",
    port_env="HEAVY_SERVICE_PORT",
    default_port=8090,
    host_env="HEAVY_SERVICE_HOST",
    app_factory=create_app,
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_service(SPEC, argv)
