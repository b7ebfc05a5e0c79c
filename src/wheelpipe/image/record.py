"""What an image is made of, resolved once: the settings of a run, and one record per service.

The task layer names services; everything below it works from a ServiceImage, made once per
image from the model, the commit and the wheelhouse: how the image runs the service, its tag
and labels, and its install manifest parsed into pins, split into the third-party part the
shared stages install and the first-party part that is the service's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..docker import Docker
from ..lockfile import Pin, parse_pins
from ..model import HttpService, Repository, ServiceSettings, service_settings
from ..target import Target
from ..tools import git
from ..wheelhouse import WHEELHOUSE, Wheelhouse, install_path

# What image builds need to know of a service before anything is built.
TO_BUILD = "to build an image"


@dataclass(frozen=True)
class ImageSettings:
    prefix: str
    base: str
    docker: Docker
    dockerfile: Path | None = None  # default: recipe.recipe_path()


def image_tag(repo: Repository, settings: ImageSettings, service: str, target: Target | None = None) -> str:
    """<prefix><service>:<version>; with several targets, one target's image is
    <prefix><service>:<version>-<arch> (arch as Docker names it: amd64, arm64). The plain tag
    then names this host's architecture's image locally, and the image index once pushed."""
    tag = f"{settings.prefix}{service}:{repo.service(service).version}"
    if target is None or len(repo.targets) == 1:
        return tag
    return f"{tag}-{target.debian_arch}"


def _git(repo: Repository, *args: str) -> str:
    result = git(repo.root, *args, check=False, errors="replace")
    return result.stdout.strip() if result.returncode == 0 else ""


@dataclass(frozen=True)
class CommitFacts:
    """What the OCI labels say of the commit every image of a run is built from."""

    revision: str  # the commit, "-dirty" when tracked files differ from it
    created: str  # the commit's time, so rebuilds are identical
    source: str  # the origin remote when it is a shareable URL


def commit_facts(repo: Repository) -> CommitFacts:
    revision = _git(repo, "rev-parse", "HEAD")
    if revision and _git(repo, "status", "--porcelain", "--untracked-files=no"):
        revision += "-dirty"
    stamp = _git(repo, "log", "-1", "--format=%ct")
    created = datetime.fromtimestamp(int(stamp), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else ""
    remote = _git(repo, "remote", "get-url", "origin")
    # Only a shareable URL is worth recording; a local path would just leak the build host's layout.
    source = remote if remote.startswith(("https://", "http://", "ssh://", "git@")) else ""
    return CommitFacts(revision, created, source)


def oci_labels(service: str, version: str, facts: CommitFacts) -> dict[str, str]:
    """Title, version, revision, creation time and source."""
    return {
        "org.opencontainers.image.title": service,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": facts.revision,
        "org.opencontainers.image.created": facts.created,
        "org.opencontainers.image.source": facts.source,
    }


def shared_arguments(runs: ServiceSettings) -> dict[str, str]:
    """The build arguments of the shared stages: which runtime-<kind> stage the image starts
    from, and an http service's port. With the closure, they decide what those stages hold."""
    if isinstance(runs, HttpService):
        return {"SERVICE_RUNTIME": "http", "DEFAULT_PORT": str(runs.port)}
    return {"SERVICE_RUNTIME": "worker-health" if runs.health_command else "worker"}


# One pin of an image part: (name, version, sha256), as the part's requirements.txt lists it.
PartPin = tuple[str, str, str]


@dataclass(frozen=True)
class ServiceImage:
    """One service's image: what every step of its build and verification reads."""

    service: str
    version: str
    target: Target  # the interpreter and platform the image is for
    runs: ServiceSettings  # how the image runs the service: http or worker
    tag: str
    manifest: str  # its install manifest, as messages name it (wheelhouse/install/...)
    labels: tuple[tuple[str, str], ...]
    pins: tuple[Pin, ...]  # its install manifest, in order
    third_party: tuple[PartPin, ...]  # what the shared stages install
    first_party: tuple[PartPin, ...]  # the service's own wheels: its closure

    @property
    def shared_arguments(self) -> dict[str, str]:
        return shared_arguments(self.runs)


def service_image(repo: Repository, settings: ImageSettings, house: Wheelhouse, service: str, facts: CommitFacts, target: Target) -> ServiceImage:
    """The record of one service's image for the target, from the model and a wheelhouse already checked."""
    package = repo.service(service)
    runs = service_settings(package, TO_BUILD)
    first_party_names = {p.name for p in repo.closure(service)}
    manifest = f"{WHEELHOUSE}/{install_path(house.targets, target, service)}"
    pins = tuple(parse_pins(house.install_manifest(service, target), manifest).values())
    third_party: list[PartPin] = []
    first_party: list[PartPin] = []
    for pin in pins:
        (digest,) = pin.hashes
        (first_party if pin.name in first_party_names else third_party).append((pin.name, pin.version, digest))
    return ServiceImage(
        service=service,
        version=package.version,
        target=target,
        runs=runs,
        tag=image_tag(repo, settings, service, target),
        manifest=manifest,
        labels=tuple(oci_labels(service, package.version, facts).items()),
        pins=pins,
        third_party=tuple(third_party),
        first_party=tuple(first_party),
    )
