"""The container's health probe: GET /healthz on the loopback address."""

import http.client
import sys
import urllib.error
import urllib.request

HEALTHCHECK_PATH = "/healthz"
HEALTHCHECK_TIMEOUT_SECONDS = 3.0


def healthcheck(port: int, *, prog: str, timeout: float = HEALTHCHECK_TIMEOUT_SECONDS) -> int:
    """Return 0 if the local server answers ``GET /healthz`` with 200, else 1 (saying why)."""
    url = f"http://127.0.0.1:{port}{HEALTHCHECK_PATH}"
    # An HTTP(S)_PROXY meant for outbound traffic must not intercept a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        error.close()
        status = error.code
    except (OSError, http.client.HTTPException) as error:
        print(f"{prog}: healthcheck: {url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{prog}: healthcheck: {url} answered {status}", file=sys.stderr)
        return 1
    return 0
