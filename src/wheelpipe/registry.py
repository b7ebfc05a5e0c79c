"""Asking a container registry for a manifest, and putting an image index (OCI distribution API).

The one place the pipeline talks HTTP to a registry: `invoke manifests --check` asks, for
every digest a committed manifest pins, HEAD /v2/<name>/manifests/<digest>; `invoke release`
reads the manifest a chart's version tag names before it pushes that version; `invoke image
--push` of several platforms reads each pushed image's manifest and puts the OCI image index
naming them under the version's tag (the only write). A registry on
loopback is spoken to in plain HTTP (as Docker allows); any other over HTTPS.

A private registry is read with the credentials its users already stored: those of
`helm registry login` (the one a chart push uses), else those of `docker login` (the one an
image push uses), each a docker-style config.json. A registry that asks for a token gets it
from the realm it names (the Docker token flow), with those credentials when there are any
and anonymously when not; one that asks for Basic authentication gets them directly. Nothing
is ever written, and a credential never appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
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


def manifest_bytes(host: str, name: str, reference: str) -> bytes | None:
    """The manifest the registry holds for name:tag (or name@digest), byte for byte (its digest
    and size are of these bytes); None when it has none."""
    return _ask(host, name, reference, "GET")


def put_manifest(host: str, name: str, tag: str, body: bytes, media_type: str) -> None:
    """PUT a manifest (an image index) under name:tag; DeployError when the registry refuses."""
    if _ask(host, name, tag, "PUT", (body, media_type)) is None:
        msg = f"the registry {host} answered 404 to the manifest for {name}:{tag}"
        raise DeployError(msg)


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


def _ask(host: str, name: str, reference: str, method: str, content: tuple[bytes, str] | None = None) -> bytes | None:
    """The body of /v2/<name>/manifests/<reference>, or None on 404; `content` (bytes and their
    media type) is sent with a PUT."""
    shown = f"{name}{'@' if reference.startswith('sha256:') else ':'}{reference}"
    url = f"{_base(host)}/v2/{name}/manifests/{reference}"
    headers = {"Accept": ACCEPT}
    if content is not None:
        headers["Content-Type"] = content[1]
    login = stored_login(host)
    for attempt in range(2):
        request = urllib.request.Request(url, data=content[0] if content else None, headers=headers, method=method)
        try:
            with _opener().open(request, timeout=TIMEOUT_SECONDS) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as error:
            error.close()  # its body is not read; an unclosed one keeps the connection open
            if error.code == 404:
                return None
            challenge = error.headers.get("WWW-Authenticate", "")
            if error.code == 401 and attempt == 0 and challenge.lower().startswith("bearer "):
                headers["Authorization"] = f"Bearer {_token(challenge, host, login)}"
                continue
            if error.code == 401 and attempt == 0 and challenge.lower().startswith("basic ") and login is not None:
                headers["Authorization"] = f"Basic {login.encoded}"
                continue
            msg = f"the registry {host} answered {error.code} {error.reason} for {shown} ({_whose(host, login, 'write' if content else 'read')})"
            raise DeployError(msg) from None
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            msg = f"cannot reach the registry {host} ({reason}) to ask for {shown}; is it up, and is the configured registry right?"
            raise DeployError(msg) from None
    return None


def _whose(host: str, login: Login | None, access: str = "read") -> str:
    """Which credentials a refusal was given to, for its message (never the credential)."""
    if login is None:
        return f"{access} anonymously: no credentials stored for {host}; `helm registry login {host}` (or `docker login {host}`) stores them"
    return f"with the credentials of {login.source} for user {login.user!r}: that user may not {access} this repository"


@dataclass(frozen=True)
class Login:
    """Credentials a login stored for one registry host, and which login stored them."""

    encoded: str = field(repr=False)  # base64 of user:password, as config.json keeps it; never shown
    user: str
    source: str


def credential_files() -> list[tuple[str, Path]]:
    """Where `helm registry login` and `docker login` keep their credentials, helm's first (a
    chart is pushed with them), each under the variable that moves it."""
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    helm = Path(os.environ.get("HELM_REGISTRY_CONFIG") or config_home / "helm" / "registry" / "config.json")
    docker = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    return [("`helm registry login`", helm), ("`docker login`", docker)]


def stored_login(host: str) -> Login | None:
    """The credentials stored for `host` (an inline `auths` entry); None when there are none.
    A file that cannot be read, or an entry that is not base64 of user:password, is passed
    over: a login elsewhere, or none, decides."""
    for source, path in credential_files():
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        auths = document.get("auths") if isinstance(document, dict) else None
        entry = auths.get(host) if isinstance(auths, dict) else None
        encoded = entry.get("auth") if isinstance(entry, dict) else None
        if not isinstance(encoded, str):
            continue
        try:
            user, colon, _ = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            continue
        if colon and user:
            return Login(encoded, user, source)
    return None


def _token(challenge: str, host: str, login: Login | None) -> str:
    """A token from the realm a Bearer challenge names: for `login` when there is one,
    anonymous when not."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if "realm" not in fields:
        msg = f"the registry {host} asks for a token but names no realm ({challenge})"
        raise DeployError(msg)
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
    request = urllib.request.Request(f"{fields['realm']}?{query}")
    if login is not None:
        request.add_header("Authorization", f"Basic {login.encoded}")
    try:
        with _opener().open(request, timeout=TIMEOUT_SECONDS) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as error:
        msg = f"the registry {host}: cannot get a token from {fields['realm']} ({_whose(host, login)}; {error})"
        raise DeployError(msg) from None
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        msg = f"the registry {host}: {fields['realm']} gave no token"
        raise DeployError(msg)
    return token
