"""Asking a container registry whether it has a manifest (OCI distribution API, read-only).

The one place the pipeline talks HTTP to a registry: `invoke manifests --check` asks, for
every digest a committed manifest pins, HEAD /v2/<name>/manifests/<digest>; `invoke release`
reads the manifest a chart's version tag names before it pushes that version. A registry on
loopback is spoken to in plain HTTP (as Docker allows); any other over HTTPS. A registry that
asks for a token gets an anonymous one from the realm it names (the Docker token flow);
credentials are not handled here.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .deploy import DeployError

ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
TIMEOUT_SECONDS = 10
_REFERENCE = re.compile(r"(?P<host>[^/]+)/(?P<name>[^@:]+(?:/[^@:]+)*)@(?P<digest>sha256:[0-9a-f]{64})")


def is_loopback(host: str) -> bool:
    """A registry on this machine, spoken to in plain HTTP (as Docker and helm allow)."""
    return host.partition(":")[0] in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127.")


def _base(host: str) -> str:
    return f"{'http' if is_loopback(host) else 'https'}://{host}"


def _opener() -> urllib.request.OpenerDirector:
    # No proxy from the environment: a registry on loopback must be asked directly.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def has_manifest(reference: str) -> bool:
    """Whether the registry the reference names has its digest; DeployError when it cannot
    be asked (unreachable, refusing, not a registry)."""
    found = _REFERENCE.fullmatch(reference)
    if not found:
        msg = f"{reference!r} is not registry/name@sha256:<64 hex digits>"
        raise DeployError(msg)
    return _ask(found["host"], found["name"], found["digest"], "HEAD") is not None


def manifest(host: str, name: str, reference: str) -> dict[str, Any] | None:
    """The manifest the registry holds for name:tag (or name@digest); None when it has none."""
    body = _ask(host, name, reference, "GET")
    if body is None:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        msg = f"the registry {host} answered {name}:{reference} with something that is no JSON manifest"
        raise DeployError(msg)
    return document


def _ask(host: str, name: str, reference: str, method: str) -> bytes | None:
    """The body of /v2/<name>/manifests/<reference>, or None on 404."""
    shown = f"{name}{'@' if reference.startswith('sha256:') else ':'}{reference}"
    url = f"{_base(host)}/v2/{name}/manifests/{reference}"
    headers = {"Accept": ACCEPT}
    for attempt in range(2):
        request = urllib.request.Request(url, headers=headers, method=method)
        try:
            with _opener().open(request, timeout=TIMEOUT_SECONDS) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            challenge = error.headers.get("WWW-Authenticate", "")
            if error.code == 401 and attempt == 0 and challenge.lower().startswith("bearer "):
                headers["Authorization"] = f"Bearer {_anonymous_token(challenge, host)}"
                continue
            msg = f"the registry {host} answered {error.code} {error.reason} for {shown} (anonymous read refused? log in is not supported here)"
            raise DeployError(msg) from None
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            msg = f"cannot reach the registry {host} ({reason}) to ask for {shown}; is it up, and is the configured registry right?"
            raise DeployError(msg) from None
    return None


def _anonymous_token(challenge: str, host: str) -> str:
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if "realm" not in fields:
        msg = f"the registry {host} asks for a token but names no realm ({challenge})"
        raise DeployError(msg)
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
    try:
        with _opener().open(f"{fields['realm']}?{query}", timeout=TIMEOUT_SECONDS) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as error:
        msg = f"the registry {host}: cannot get an anonymous token from {fields['realm']} ({error})"
        raise DeployError(msg) from None
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str):
        msg = f"the registry {host}: {fields['realm']} gave no token"
        raise DeployError(msg)
    return token
