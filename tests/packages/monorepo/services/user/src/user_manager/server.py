"""Command line entry point: ``user-manager [serve|healthcheck]``, run by service_runtime."""

from collections.abc import Sequence

from service_runtime import ServiceSpec, run_service

from user_manager import create_app

# prog, port_env and default_port must equal [tool.wheelpipe.service] in pyproject.toml.
SPEC = ServiceSpec(
    prog="user-manager",
    port_env="USER_MANAGER_PORT",
    default_port=8002,
    host_env="USER_MANAGER_HOST",
    app_factory=create_app,
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_service(SPEC, argv)
