"""Pushing an image: the registry a tag prefix names, and the digest the registry stored."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from .. import registry
from ..console import report
from ..deploy import Pushed, pushed_from_inspect
from ..errors import DockerError, ToolError
from ..model import Repository
from ..target import Target
from .record import ImageSettings, image_tag


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


# What an image index is, and the media types of the image manifests it may name.
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_IMAGE_MEDIA_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")


def push_index(tag: str, images: list[tuple[Target, str]]) -> str:
    """Put an OCI image index under `tag` naming each pushed image (its target, and the digest
    its push reported), each entry the registry's own manifest of it (digest, size, media type
    read back and checked); return the index's digest. One digest then names the service on
    every architecture, and a node pulls its own."""
    registry_host = require_registry(tag)
    repository = repository_of(tag)
    name = repository.removeprefix(f"{registry_host}/")
    version = tag.rpartition(":")[2]
    report.step(f"pushing the image index {tag} of {', '.join(t.docker_platform for t, _ in images)}")
    manifests = []
    for target, digest in images:
        body = registry.manifest_bytes(registry_host, name, digest)
        if body is None or f"sha256:{hashlib.sha256(body).hexdigest()}" != digest:
            msg = f"the registry {registry_host} holds no manifest {repository}@{digest} for {target.docker_platform}, though its push reported it"
            raise DockerError(msg)
        media_type = json.loads(body).get("mediaType")
        if media_type not in _IMAGE_MEDIA_TYPES:
            msg = f"{repository}@{digest}: expected an image manifest ({' or '.join(_IMAGE_MEDIA_TYPES)}), found the media type {media_type!r}"
            raise DockerError(msg)
        platform = {"architecture": target.debian_arch, "os": "linux"}
        if target.debian_arch == "arm64":
            platform["variant"] = "v8"
        manifests.append({"mediaType": media_type, "digest": digest, "size": len(body), "platform": platform})
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}, indent=2, sort_keys=True).encode()
    registry.put_manifest(registry_host, name, version, index, INDEX_MEDIA_TYPE)
    digest = f"sha256:{hashlib.sha256(index).hexdigest()}"
    stored = registry.manifest_bytes(registry_host, name, version)
    if stored != index:
        msg = f"put the image index {tag} ({digest}), but the registry {registry_host} serves other bytes under {version}"
        raise DockerError(msg)
    report.info(f"pushed the image index {repository}@{digest}")
    return digest


def push_service(repo: Repository, settings: ImageSettings, service: str) -> Pushed:
    """Push the service's image, or with several targets each target's image and then the image
    index naming them under the plain tag; return the record of what deploy manifests pin: that
    tag, the digest the registry stored for it, and the user and revision every image shares."""
    tag = image_tag(repo, settings, service)
    if len(repo.targets) == 1:
        return pushed_from_inspect(tag, push_image(settings, tag), settings.docker.inspect(tag))
    pushed = []
    for target in repo.targets:
        own = image_tag(repo, settings, service, target)
        pushed.append((target, pushed_from_inspect(own, push_image(settings, own), settings.docker.inspect(own))))
    shared = {(p.user, p.revision) for _, p in pushed}
    if len(shared) != 1:
        found = "; ".join(f"{target.machine}: user {p.user!r}, revision {p.revision!r}" for target, p in pushed)
        msg = f"the images of {service} differ in their user or revision label ({found}): build them in one run of `invoke image`"
        raise DockerError(msg)
    index = push_index(tag, [(target, p.digest) for target, p in pushed])
    return dataclasses.replace(pushed[0][1], tag=tag, digest=index)
