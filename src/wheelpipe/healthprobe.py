"""The health probe of an http service's image: GET a path on the service's port, as a kubelet's
httpGet probe does, and exit 0 when it answers 2xx or 3xx.

It runs as a script under the venv's interpreter (`python -I -B healthprobe.py PORT_ENV PORT
PATH`), so it uses the standard library alone and nothing of wheelpipe or of the service: the
app is never started a second time to probe the first. The port is read from the service's
port variable when the container sets it (an override moves the app and the probe together),
else the image's default. No proxy: a probe of the loopback address must reach the app.

Exit 0 quietly; else one line saying what was asked and what came back, and exit 1, or
SETTLED_EXIT when the app answered with a status no starting app gives (the path is not one
it serves, or not to this probe): waiting will not make that pass.
"""

from __future__ import annotations

import http.client
import os
import sys
from dataclasses import dataclass

TIMEOUT_SECONDS = 3.0
SETTLED_EXIT = 3  # not 2, which Docker reserves for health checks
# Answers of an app that is up and will give the same again: a wrong, gone or closed path.
# (503, 502 or a refused connection are what a starting app gives; they are waited out.)
_SETTLED_STATUSES = frozenset({400, 401, 403, 404, 405, 410})


@dataclass(frozen=True)
class Failed:
    said: str  # what was asked and what came back, one line
    settled: bool  # the app answered, and will answer the same however long it is given


def probe(port_env: str, default_port: int, path: str, timeout: float = TIMEOUT_SECONDS) -> Failed | None:
    """None when GET `path` on the loopback answers 2xx or 3xx, else why not."""
    value = os.environ.get(port_env) or str(default_port)
    if not value.isdigit() or not 0 < int(value) < 65536:
        return Failed(f"{port_env}={value!r} is not a port number", settled=True)
    return http_get("127.0.0.1", int(value), path, timeout)


def http_get(host: str, port: int, path: str, timeout: float = TIMEOUT_SECONDS) -> Failed | None:
    """None when GET `path` on host:port answers 2xx or 3xx, what a kubelet's httpGet probe
    counts as success; else what was asked and what came back. (wheelpipe's podrun probes
    from outside the container with this same function.)"""
    url = f"http://{host}:{port}{path}"
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "wheelpipe-healthprobe"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        return Failed(f"GET {url} failed ({error or type(error).__name__})", settled=False)
    finally:
        connection.close()
    return None if 200 <= status < 400 else Failed(f"GET {url} answered {status}", settled=status in _SETTLED_STATUSES)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit():
        print("usage: healthprobe.py PORT_ENV DEFAULT_PORT PATH", file=sys.stderr)
        return 2
    failure = probe(argv[0], int(argv[1]), argv[2])
    if failure:
        print(f"health probe: {failure.said}", file=sys.stderr)
        return SETTLED_EXIT if failure.settled else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
