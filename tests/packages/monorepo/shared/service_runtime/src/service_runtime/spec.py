"""What a service tells the runtime about itself."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# A PEP 3333 application: (environ, start_response) -> body. Any framework's app object is one.
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class ServiceSpec:
    """One service's declaration; the first three mirror its ``[tool.wheelpipe.service]`` table."""

    prog: str  # the console script's name: `command`
    port_env: str  # the variable its port comes from: `port-env`
    default_port: int  # the port when that variable is unset: `default-port`
    host_env: str  # the variable its bind address comes from (default DEFAULT_HOST)
    app_factory: Callable[[], WSGIApp]  # called by gunicorn to build the application

    @property
    def title(self) -> str:
        """``order-manager`` -> ``order manager``, for the help text."""
        return self.prog.replace("-", " ")
