"""`invoke image` and `invoke verify-image`: a service's runtime image from the wheelhouse.

The build context holds only the service's wheels, split into third-party and first-party
parts so that a code change leaves the dependency layers cached. The build runs with
`--network=none`; the image is verified against the install manifest before it is tagged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from packaging.utils import canonicalize_name

from . import baseimage
from .console import Reporter
from .docker import Docker
from .errors import DockerError, ToolError
from .lockfile import format_pins, parse_pins
from .model import DOCKERFILES_DIR, Repository
from .wheelhouse import STORE, Wheelhouse, build_wheels

DOCKERFILE = "service.Dockerfile"
_INSTALLED = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted([d.metadata['Name'], d.version] for d in m.distributions())))"
)


@dataclass(frozen=True)
class ImageSettings:
    prefix: str
    base: str
    docker: Docker
    dockerfile: Path | None = None  # default: dockerfiles/service.Dockerfile of the repository


def image_tag(repo: Repository, settings: ImageSettings, service: str) -> str:
    return f"{settings.prefix}{service}:{repo.service(service).version}"


def _git(repo: Repository, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo.root, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def oci_labels(repo: Repository, service: str) -> dict[str, str]:
    """Version, revision, creation time (the commit's, so rebuilds are identical) and source."""
    revision = _git(repo, "rev-parse", "HEAD")
    if revision and _git(repo, "status", "--porcelain", "--untracked-files=no"):
        revision += "-dirty"
    stamp = _git(repo, "log", "-1", "--format=%ct")
    created = datetime.fromtimestamp(int(stamp), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else ""
    remote = _git(repo, "remote", "get-url", "origin")
    # Only a shareable URL is worth recording; a local path would just leak the build host's layout.
    source = remote if remote.startswith(("https://", "http://", "ssh://", "git@")) else ""
    return {
        "SERVICE": service,
        "VERSION": repo.service(service).version,
        "REVISION": revision,
        "CREATED": created,
        "SOURCE": source,
    }


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def prepare_context(repo: Repository, house: Wheelhouse, service: str, context: Path, dockerfile: Path | None = None) -> None:
    """installer/, third-party/ and first-party/: the only files the build can see."""
    first_party = {p.name for p in repo.closure(service)}
    manifest = house.install_manifest(service)
    pins = parse_pins(manifest, f"wheelhouse/install/{service}.txt")
    by_hash = {e.sha256: e for e in house.entries.values()}
    parts: dict[str, list[tuple[str, str, str]]] = {"third-party": [], "first-party": []}
    for pin in pins.values():
        (digest,) = pin.hashes
        entry = by_hash[digest]
        part = "first-party" if pin.name in first_party else "third-party"
        (context / part).mkdir(parents=True, exist_ok=True)
        _link_or_copy(house.path / entry.file, context / part / entry.file)
        parts[part].append((pin.name, pin.version, digest))
    for part, entries in parts.items():
        header = f"The {part} part of wheelhouse/install/{service}.txt, for the image build."
        (context / part / "requirements.txt").write_text(format_pins(entries, header))
    installer = house.installer()
    (context / "installer").mkdir()
    _link_or_copy(house.path / installer.file, context / "installer" / installer.file)
    shutil.copy2(dockerfile or repo.root / DOCKERFILES_DIR / DOCKERFILE, context / DOCKERFILE)


def installed_distributions(docker: Docker, image: str, reporter: Reporter) -> dict[str, str]:
    """Name -> version of what the image's virtual environment holds, read from the image."""
    output = docker.python(image, _INSTALLED, reporter, python="/srv/venv/bin/python")
    return {canonicalize_name(name): version for name, version in json.loads(output.strip().splitlines()[-1])}


def verify_image(house: Wheelhouse, docker: Docker, image: str, service: str, reporter: Reporter) -> None:
    """The image's venv holds exactly the install manifest's pins: nothing more, nothing less."""
    expected = {name: pin.version for name, pin in parse_pins(house.install_manifest(service)).items()}
    found = installed_distributions(docker, image, reporter)
    problems = [f"missing {name}=={version}" for name, version in sorted(expected.items()) if name not in found]
    problems += [f"extra {name}=={version}" for name, version in sorted(found.items()) if name not in expected]
    problems += [
        f"{name} is {found[name]}, manifest pins {version}"
        for name, version in sorted(expected.items())
        if name in found and found[name] != version
    ]
    if problems:
        msg = f"image {image} does not match wheelhouse/install/{service}.txt: {'; '.join(problems)}"
        raise DockerError(msg)
    reporter.info(f"{image}: its {len(found)} distributions are exactly those of wheelhouse/install/{service}.txt")


def require_base(repo: Repository, settings: ImageSettings, reporter: Reporter) -> None:
    docker = settings.docker
    docker.require_engine(reporter)
    if not docker.image_id(settings.base, reporter):
        msg = (
            f"base image {settings.base} is not present: `docker pull {settings.base}`, or where no registry "
            f"is reachable run `invoke base-image` and build with --base-image {baseimage.DEFAULT_TAG}"
        )
        raise DockerError(msg)
    baseimage.check_matches_target(docker, settings.base, repo.target, reporter, cache=repo.root / STORE / "base-images.json")


def build_image(repo: Repository, settings: ImageSettings, service: str, reporter: Reporter, *, no_cache: bool = False) -> str:
    """Build, verify, then tag; return the tag. A failure anywhere leaves every tag where it was."""
    repo.service(service)
    require_base(repo, settings, reporter)
    house = build_wheels(repo, service=service, reporter=reporter).wheelhouse
    tag = image_tag(repo, settings, service)
    reporter.step(f"building {tag} from {settings.base} (network off during the build)")
    package = repo.service(service)
    with tempfile.TemporaryDirectory(prefix="wheelpipe-image-") as tmp:
        context = Path(tmp)
        prepare_context(repo, house, service, context, settings.dockerfile)
        iidfile = context / "image.id"
        args = {
            "BASE_IMAGE": settings.base,
            "SERVICE_COMMAND": package.service.command,
            "DEFAULT_PORT": str(package.service.default_port),
            **oci_labels(repo, service),
        }
        # --force-rm: the legacy builder otherwise leaves a failed step's container behind.
        argv = ["build", "--network=none", "--force-rm", "--iidfile", str(iidfile), "-f", str(context / DOCKERFILE)]
        if no_cache:
            argv.append("--no-cache")
        argv += [arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")]
        try:
            settings.docker.run(*argv, str(context), reporter=reporter, what=f"docker build of {service}")
        except ToolError as error:
            raise DockerError(f"building the image of {service} failed: {error}") from None
        image_id = iidfile.read_text().strip()
    verify_image(house, settings.docker, image_id, service, reporter)
    settings.docker.run("tag", image_id, tag, reporter=reporter, what=f"tagging {tag}")
    reporter.info(f"tagged {tag} ({image_id.removeprefix('sha256:')[:12]})")
    return tag


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


def push_image(settings: ImageSettings, tag: str, reporter: Reporter) -> str:
    """`docker push` the tag to the registry its prefix names; return the pushed digest (sha256:...)."""
    import re  # here rather than at the top: this function was appended to the module
    registry = require_registry(tag)
    repository = repository_of(tag)
    reporter.step(f"pushing {tag} to {registry}")
    try:
        pushed = settings.docker.run("push", tag, reporter=reporter, what=f"docker push {tag}")
    except ToolError as error:
        detail = str(error).partition("): ")[2] or str(error)  # docker's own reason, without the command
        msg = f"could not push {tag} to the registry {registry}: {detail} (is the registry up, and are you logged in: `docker login {registry}`?)"
        raise DockerError(msg) from None
    digests = [d for d in settings.docker.inspect(tag, reporter).get("RepoDigests") or [] if d.partition("@")[0] == repository]
    if not digests:
        msg = f"pushed {tag}, but the engine records no digest for {repository} (RepoDigests of {tag})"
        raise DockerError(msg)
    # docker push ends with `<version>: digest: sha256:... size: N`: prefer that one should the
    # engine remember more than one digest for the repository.
    said = re.findall(r"digest: (sha256:[0-9a-f]{64})", pushed.stdout)
    digest = next((d for d in reversed(said) if f"{repository}@{d}" in digests), digests[0].partition("@")[2])
    reporter.info(f"pushed {repository}@{digest}")
    return digest
