"""Pushing an image: the registry a tag prefix names, and the digest the registry stored."""

from __future__ import annotations

import re

from ..console import report
from ..errors import DockerError, ToolError
from .record import ImageSettings


def registry_of(prefix: str) -> str | None:
    """The registry host a tag prefix names, as Docker reads it: a first path component with a
    `.` or a `:` (a host name or a port) or `localhost`; None when the prefix names none
    (Docker would push such a tag to Docker Hub)."""
    first, slash, _ = prefix.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def require_registry(prefix: str) -> str:
    """The prefix's registry, or an error saying how to name one (checked before any build)."""
    registry = registry_of(prefix)
    if registry is None:
        msg = (
            f"--push needs a registry in the image prefix, e.g. --prefix registry.example.com/team/ or "
            f"--prefix 127.0.0.1:5000/team/ (config image.prefix or INVOKE_IMAGE_PREFIX); {prefix!r} names none"
        )
        raise DockerError(msg)
    return registry


def repository_of(tag: str) -> str:
    """`registry/path/name` of `registry/path/name:version` (a registry's port is no tag)."""
    name, colon, version = tag.rpartition(":")
    return name if colon and "/" not in version else tag


def push_image(settings: ImageSettings, tag: str) -> str:
    """`docker push` the tag to the registry its prefix names; return the pushed digest (sha256:...)."""
    registry = require_registry(tag)
    repository = repository_of(tag)
    report.step(f"pushing {tag} to {registry}")
    try:
        pushed = settings.docker.run("push", tag, what=f"docker push {tag}")
    except ToolError as error:
        detail = str(error).partition("): ")[2] or str(error)  # docker's own reason, without the command
        msg = f"could not push {tag} to the registry {registry}: {detail} (is the registry up, and are you logged in: `docker login {registry}`?)"
        raise DockerError(msg) from None
    digests = [d for d in settings.docker.inspect(tag).get("RepoDigests") or [] if d.partition("@")[0] == repository]
    if not digests:
        msg = f"pushed {tag}, but the engine records no digest for {repository} (RepoDigests of {tag})"
        raise DockerError(msg)
    # docker push ends with `<version>: digest: sha256:... size: N`: prefer that one should the
    # engine remember more than one digest for the repository.
    said = re.findall(r"digest: (sha256:[0-9a-f]{64})", pushed.stdout)
    digest: str = next((d for d in reversed(said) if f"{repository}@{d}" in digests), digests[0].partition("@")[2])
    report.info(f"pushed {repository}@{digest}")
    return digest
