"""`invoke image` and `invoke verify-image`: a service's runtime image from the wheelhouse.

The build context holds only the service's wheels, split into third-party and first-party
parts so that a code change leaves the dependency layers cached, and the installer (uv)
with its hash. The build runs with `--network=none`; the image is verified against the
install manifest before it is tagged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.utils import canonicalize_name

from . import baseimage, healthprobe, importcheck, launch, venvfiles
from .console import Reporter, TextStream, parallel
from .docker import Docker, Tree
from .errors import DockerError, ToolError
from .fsutil import exclusive_lock, write_atomic
from .lockfile import format_pins, parse_pins
from .model import DOCKERFILES_DIR, HttpService, Repository, ServiceSettings, service_settings
from .recipe import check as check_recipe
from .resources import service_dockerfile
from .tools import git
from .wheelhouse import STORE, Wheelhouse, build_wheels

DOCKERFILE = "service.Dockerfile"
# How a check in the Dockerfile starts the line saying why it stopped the build.
CHECK_MARKER = "image check: "
# The Dockerfile's stage holding every layer of the image but the service's own.
SHARED_STAGE = "runtime-deps"
# Under the wheelhouse store: one build context directory per service.
CONTEXTS = "image-contexts"
# Where the Dockerfile puts the service's virtual environment.
VENV = PurePosixPath("/srv/venv")
# In first-party/ of the build context: what the app stage checks of how the image runs the
# service (launch.Launch), the scripts it installs for that, the script it imports the
# service with, and an http service's health probe.
SERVICE_ENV = "service.env"
ENTRYPOINT_SCRIPT = "service"
HEALTH_SCRIPT = "service-health"
IMPORT_CHECK = "importcheck.py"
HEALTH_PROBE = "healthprobe.py"
# What image builds need to know of a service before anything is built.
TO_BUILD = "to build an image"
# The parts of a build context: what the shared stages need, and what the service's own need.
INSTALLER_PART, THIRD_PARTY, FIRST_PARTY = "installer", "third-party", "first-party"
ALL_PARTS = (INSTALLER_PART, THIRD_PARTY, FIRST_PARTY)
SHARED_PARTS = (INSTALLER_PART, THIRD_PARTY)
# Under the wheelhouse store: the image ids of shared stages already built, by what made them.
STAGES_FILE = "image-stages.json"


@dataclass(frozen=True)
class ImageSettings:
    prefix: str
    base: str
    docker: Docker
    dockerfile: Path | None = None  # default: recipe_path()


def image_tag(repo: Repository, settings: ImageSettings, service: str) -> str:
    return f"{settings.prefix}{service}:{repo.service(service).version}"


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


def oci_labels(repo: Repository, service: str, facts: CommitFacts) -> dict[str, str]:
    """Title, version, revision, creation time and source."""
    return {
        "org.opencontainers.image.title": service,
        "org.opencontainers.image.version": repo.service(service).version,
        "org.opencontainers.image.revision": facts.revision,
        "org.opencontainers.image.created": facts.created,
        "org.opencontainers.image.source": facts.source,
    }


def label_instruction(labels: dict[str, str]) -> str:
    """One LABEL instruction with the values written out (the Dockerfile's last line).

    Inside double quotes a Dockerfile expands `$` and ends the value at `"`; a backslash
    escapes both and itself. A line break cannot be written at all, and git gives none.
    """

    def quoted(text: str) -> str:
        if "\n" in text or "\r" in text:
            msg = f"image label value {text!r} holds a line break"
            raise DockerError(msg)
        return '"' + re.sub(r'(["\\$])', r"\\\1", text) + '"'

    return "LABEL " + " ".join(f"{quoted(key)}={quoted(value)}" for key, value in labels.items()) + "\n"


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _context_parts(repo: Repository, house: Wheelhouse, service: str) -> dict[str, list[tuple[str, str, str]]]:
    """The service's install manifest split into its third-party and first-party parts:
    (name, version, sha256) of each pin."""
    first_party = {p.name for p in repo.closure(service)}
    pins = parse_pins(house.install_manifest(service), f"wheelhouse/install/{service}.txt")
    parts: dict[str, list[tuple[str, str, str]]] = {"third-party": [], "first-party": []}
    for pin in pins.values():
        (digest,) = pin.hashes
        parts["first-party" if pin.name in first_party else "third-party"].append((pin.name, pin.version, digest))
    return parts


def prepare_context(
    repo: Repository,
    house: Wheelhouse,
    service: str,
    context: Path,
    dockerfile_text: str,
    labels: dict[str, str] | None = None,
    parts: tuple[str, ...] = ALL_PARTS,
    environment: dict[str, str] | None = None,
) -> None:
    """The only files the build can see: of installer/, third-party/ and first-party/ (with
    the launch files) those in `parts`, and the Dockerfile, ending with a LABEL instruction of
    `labels` and an ENV instruction of `environment` when given."""
    by_hash = {e.sha256: e for e in house.entries.values()}
    for part, pins in _context_parts(repo, house, service).items():
        if part not in parts:
            continue
        (context / part).mkdir(parents=True)
        for _, _, digest in pins:
            _link_or_copy(house.path / by_hash[digest].file, context / part / by_hash[digest].file)
        header = f"The {part} part of wheelhouse/install/{service}.txt, for the image build."
        (context / part / "requirements.txt").write_text(format_pins(pins, header))
    if INSTALLER_PART in parts:
        installer = house.installer()
        (context / INSTALLER_PART).mkdir()
        _link_or_copy(house.path / installer.file, context / INSTALLER_PART / installer.file)
        # The build checks the wheel against the hash the wheelhouse verified, so what runs as
        # the installer is that wheel even if the file changed after the check.
        (context / INSTALLER_PART / "SHA256SUMS").write_text(f"{installer.sha256}  {installer.file}\n")
    if FIRST_PARTY in parts:
        settings = service_settings(repo.service(service), TO_BUILD)
        files = launch.launch(settings)
        (context / FIRST_PARTY / SERVICE_ENV).write_text(files.service_env)
        (context / FIRST_PARTY / ENTRYPOINT_SCRIPT).write_text(files.entrypoint)
        if files.health is not None:
            (context / FIRST_PARTY / HEALTH_SCRIPT).write_text(files.health)
        shutil.copyfile(importcheck.__file__, context / FIRST_PARTY / IMPORT_CHECK)
        shutil.copyfile(healthprobe.__file__, context / FIRST_PARTY / HEALTH_PROBE)
    text = dockerfile_text
    if labels:
        text = text.rstrip("\n") + "\n" + label_instruction(labels)
    if environment:
        text = text.rstrip("\n") + "\n" + environment_instruction(environment)
    (context / DOCKERFILE).write_text(text)


def environment_instruction(environment: dict[str, str]) -> str:
    """One ENV instruction: the service's port in the variable its code reads. Written into the
    last stage (the image) rather than a shared one, so that services on the same closure and
    port share every layer whatever variable they read it from."""
    return "ENV " + " ".join(f'{key}="{value}"' for key, value in environment.items()) + "\n"


def shared_arguments(settings: ServiceSettings) -> dict[str, str]:
    """The build arguments of the shared stages: which runtime-<kind> stage the image starts
    from, and an http service's port. With the closure, they decide what those stages hold."""
    if isinstance(settings, HttpService):
        return {"SERVICE_RUNTIME": "http", "DEFAULT_PORT": str(settings.port)}
    return {"SERVICE_RUNTIME": "worker-health" if settings.health_command else "worker"}


def recipe_path(repo: Repository, settings: ImageSettings) -> Path:
    """The Dockerfile: the settings', else the monorepo's own dockerfiles/service.Dockerfile
    (a team's place for what its runtime images need beyond ours), else the one wheelpipe ships."""
    if settings.dockerfile:
        return settings.dockerfile
    own = repo.root / DOCKERFILES_DIR / DOCKERFILE
    return own if own.is_file() else service_dockerfile()


def dockerfile_text(repo: Repository, settings: ImageSettings) -> str:
    return recipe_path(repo, settings).read_text()


_FROM = re.compile(r"^FROM\s+(?:--\S+\s+)*\S+(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Recipe:
    """The Dockerfile cut where the service's own stages begin, for the legacy builder.

    That builder runs every stage before the one asked for and is sent the whole context on
    every build: the 18 MB installer and every third-party wheel again for a one-line change.
    So the stages up to SHARED_STAGE are built on their own, once per closure and port, from a
    context of those wheels; the service's own stages are built from a context of its own
    wheels, with each shared stage standing in as `FROM <its image id>` (an id names content,
    so the stand-in is exactly what was built).
    """

    shared: str  # the lines before the first FROM, then every stage up to SHARED_STAGE
    shared_stages: tuple[str, ...]  # the names of those the service's own stages use, in order
    own: str  # the same lines before the first FROM, a stand-in per shared stage, the rest

    @staticmethod
    def stage_argument(stage: str) -> str:
        return "WHEELPIPE_STAGE_" + re.sub(r"[^A-Za-z0-9]", "_", stage).upper()


def cut_recipe(text: str) -> Recipe | None:
    """The recipe cut after SHARED_STAGE; None when the Dockerfile has no such stage or it is
    the last one (a custom Dockerfile is then built in one piece, as BuildKit builds any)."""
    lines = text.splitlines(keepends=True)
    starts = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _FROM.match(line.strip()))]
    names = [name for _, name in starts]
    if SHARED_STAGE not in names or names.index(SHARED_STAGE) == len(names) - 1:
        return None
    shared_count = names.index(SHARED_STAGE) + 1
    preamble = "".join(lines[: starts[0][0]])
    cut = starts[shared_count][0]
    # Only the stages the rest names (FROM <stage>, COPY --from=<stage>) need a stand-in, and
    # each stand-in an image id: one more build of the shared part.
    rest = "".join(lines[cut:])
    used = set(re.findall(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", rest, re.IGNORECASE | re.MULTILINE))
    used |= set(re.findall(r"--from=(\S+)", rest, re.IGNORECASE))
    shared_stages = tuple(name for name in names[:shared_count] if name and name in used)
    stand_ins = "".join(f"ARG {Recipe.stage_argument(n)}\n" for n in shared_stages)
    stand_ins += "".join(f"FROM ${{{Recipe.stage_argument(n)}}} AS {n}\n" for n in shared_stages)
    return Recipe(shared="".join(lines[:cut]), shared_stages=shared_stages, own=preamble + stand_ins + "".join(lines[cut:]))


@dataclass(frozen=True)
class Installed:
    """What the image's interpreter can import distributions from, read from the image."""

    distributions: dict[str, str]  # canonical name -> version
    tree: Tree  # the venv: every file's bytes, every link
    unaccounted: list[str]  # what puts places outside the venv on its path: no manifest covers them


def _metadata_file(path: PurePosixPath) -> bool:
    """What a distribution search over the venv reads: the files naming each distribution, the
    .pth files that extend the path, and the venv's configuration."""
    return (
        path.suffix == ".pth"
        or path == PurePosixPath("pyvenv.cfg")
        or (path.parent.suffix in (".dist-info", ".egg-info") and path.name in ("METADATA", "PKG-INFO"))
    )


def read_installed(docker: Docker, image: str, reporter: Reporter) -> Installed:
    """The venv's distributions, read from the image's files: nothing runs in the image.

    The interpreter's search path is rebuilt as `site` builds it: the venv's site-packages and
    the directories its .pth files name (their `import` lines, code, are not run). A venv that
    sees the base's site-packages, a .pth entry outside the venv and PYTHONPATH in the image's
    environment are reported rather than followed.
    """
    # Two reads of the engine at once: the configuration, while the files stream.
    with ThreadPoolExecutor(max_workers=1) as pool:
        configured = pool.submit(docker.config, image, reporter)
        # Every file: each is compared with the wheel it came from (venvfiles).
        tree = docker.read_tree(image, str(VENV), reporter, lambda _: True)
        image_config = configured.result()
    environment = image_config.get("Env") or []
    unaccounted = [f"the image sets {entry}" for entry in environment if entry.startswith("PYTHONPATH=") and entry != "PYTHONPATH="]
    # An override's `USER root` (or none at all) would ship a root image: the recipe check
    # refuses it before the build, and the image's own configuration is checked here too.
    user = str(image_config.get("User") or "")
    if user.partition(":")[0].lower() in ("", "root", "0"):
        unaccounted.append(f"the image runs as {'root (it sets no USER)' if not user else f'user {user}'}, not an unprivileged user")
    config = tree.files.get(PurePosixPath("pyvenv.cfg"), b"").decode(errors="replace")
    options = {key.strip(): value.strip() for key, _, value in (line.partition("=") for line in config.splitlines())}
    if options.get("include-system-site-packages", "false").lower() == "true":
        unaccounted.append(f"{VENV}/pyvenv.cfg includes the base image's site-packages")
    path = []
    for site in sorted(d for d in tree.directories if len(d.parts) == 3 and d.match("lib*/python*/site-packages")):
        path.append(site)
        for pth in sorted(f for f in tree.files if f.parent == site and f.suffix == ".pth"):
            for line in tree.files[pth].decode(errors="replace").splitlines():
                entry = line.strip()
                if not entry or entry.startswith(("#", "import ", "import\t")):
                    continue
                named = PurePosixPath(os.path.normpath(VENV / site / entry))
                if not named.is_relative_to(VENV):
                    unaccounted.append(f"{pth.name} puts {named} on the path")
                elif named.relative_to(VENV) in tree.directories:
                    path.append(named.relative_to(VENV))
    with tempfile.TemporaryDirectory(prefix="wheelpipe-verify-") as tmp:
        # importlib.metadata reads distributions from a file system: give it the files read.
        for file, content in tree.files.items():
            if not _metadata_file(file):
                continue
            (Path(tmp) / file).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / file).write_bytes(content)
        found: dict[str, str] = {
            canonicalize_name(d.metadata["Name"]): d.version
            for d in importlib.metadata.distributions(path=[str(Path(tmp) / p) for p in path])
            if d.metadata["Name"]
        }
    return Installed(found, tree, unaccounted)


def verify_image(house: Wheelhouse, docker: Docker, image: str, service: str, settings: ServiceSettings, reporter: Reporter) -> None:
    """The image's venv holds exactly the install manifest's pins, nothing more, nothing less,
    and every file of it is what the pinned wheels (or the installer, or the tooling's launch
    scripts) put there (venvfiles)."""
    pins = parse_pins(house.install_manifest(service))
    expected = {name: pin.version for name, pin in pins.items()}
    installed = read_installed(docker, image, reporter)
    found = installed.distributions
    problems = [f"missing {name}=={version}" for name, version in sorted(expected.items()) if name not in found]
    problems += [f"extra {name}=={version}" for name, version in sorted(found.items()) if name not in expected]
    problems += [
        f"{name} is {found[name]}, manifest pins {version}"
        for name, version in sorted(expected.items())
        if name in found and found[name] != version
    ]
    problems += installed.unaccounted
    if not problems:
        problems += _file_differences(house, pins, installed.tree, settings)
    if problems:
        shown = problems[:5] + ([f"and {len(problems) - 5} more"] if len(problems) > 5 else [])
        msg = f"image {image} does not match wheelhouse/install/{service}.txt: {'; '.join(shown)}"
        raise DockerError(msg)
    reporter.info(f"{image}: its {len(found)} distributions are exactly those of wheelhouse/install/{service}.txt, file for file")


def _file_differences(house: Wheelhouse, pins: dict[str, Any], tree: Tree, settings: ServiceSettings) -> list[str]:
    by_hash = {e.sha256: e for e in house.entries.values()}
    wheels = []
    for pin in pins.values():
        (digest,) = pin.hashes
        entry = by_hash.get(digest.removeprefix("sha256:"))
        if entry is None:
            return [f"{pin.name}=={pin.version}: no wheel of the wheelhouse has the sha256 the manifest pins"]
        wheels.append(house.path / entry.file)
    sites = sorted(d for d in tree.directories if len(d.parts) == 3 and d.match("lib*/python*/site-packages"))
    if len(sites) != 1:
        return [f"expected one lib/pythonX.Y/site-packages in {VENV}, found {len(sites)}"]
    launched = launch.launch(settings)
    written = {PurePosixPath("bin") / ENTRYPOINT_SCRIPT: launched.entrypoint.encode()}
    if launched.health is not None:
        written[PurePosixPath("bin") / HEALTH_SCRIPT] = launched.health.encode()
    layout = venvfiles.layout(wheels, sites[0], VENV)
    return venvfiles.differences(tree.files, set(tree.links), layout, written)


def require_base(repo: Repository, settings: ImageSettings, reporter: Reporter) -> str:
    """The base image's id, once it is known to exist and to match the target."""
    docker = settings.docker
    base_id = docker.image_id(settings.base, reporter)
    if not base_id:
        # Only now is it worth a `docker info`: an unreachable engine is the likelier cause.
        docker.require_engine(reporter)
        msg = (
            f"base image {settings.base} is not present: `docker pull {settings.base}`, or where no registry "
            f"is reachable run `invoke base-image` and build with --base-image {baseimage.DEFAULT_TAG}"
        )
        raise DockerError(msg)
    baseimage.check_matches_target(docker, settings.base, repo.target, reporter, cache=repo.root / STORE / "base-images.json", image_id=base_id)
    return base_id


def build_image(repo: Repository, settings: ImageSettings, service: str, reporter: Reporter, *, no_cache: bool = False) -> str:
    """Build, verify, then tag; return the tag. A failure anywhere leaves every tag where it was."""
    (tag,) = build_images(repo, settings, [service], reporter, no_cache=no_cache)
    return tag


def build_images(
    repo: Repository, settings: ImageSettings, services: list[str], reporter: Reporter, *, no_cache: bool = False, jobs: int = 0
) -> list[str]:
    """Build, verify and tag each service's image, up to `jobs` at once (0: one per core);
    return the tags in order.

    The base and the wheelhouse are checked once for all. With more than one service every
    output line starts with the service's name. A failure names its service and leaves that
    service's tag where it was; builds not started yet are not started.
    """
    for service in services:
        service_settings(repo.service(service), TO_BUILD)  # before anything is checked or built
    path = recipe_path(repo, settings)
    where = repo.relative(path) if path.is_relative_to(repo.root) else str(path)
    check_recipe(path.read_text(), where)  # an override that fetches or runs as root: never built
    with ThreadPoolExecutor(max_workers=1) as pool:
        # git's answers about the commit, while the wheelhouse is brought up to date.
        asked = pool.submit(commit_facts, repo)
        base_id = require_base(repo, settings, reporter)
        house = build_wheels(repo, service=services[0] if len(services) == 1 else None, reporter=reporter).wheelhouse
        facts = asked.result()
    workers = min(jobs if jobs > 0 else os.cpu_count() or 1, len(services))
    if workers == 1:
        return [build_from_wheelhouse(repo, settings, house, service, reporter, no_cache=no_cache, base_id=base_id, facts=facts) for service in services]
    if not settings.docker.buildkit:
        _build_shared_stages(repo, settings, house, services, reporter, no_cache=no_cache, base_id=base_id)
        no_cache = False  # what the services share was just built; the rest is new anyway
    lines = threading.Lock()

    def build(service: str) -> str:
        prefixed = dataclasses.replace(reporter, stream=_PrefixedLines(reporter.stream, f"{service}: ", lines))
        return build_from_wheelhouse(repo, settings, house, service, prefixed, no_cache=no_cache, base_id=base_id, facts=facts)

    return parallel(build, services, workers=workers)


def _build_shared_stages(
    repo: Repository, settings: ImageSettings, house: Wheelhouse, services: list[str], reporter: Reporter, *, no_cache: bool, base_id: str
) -> None:
    """Build the stages services share (deps and runtime-deps), once each, before the services.

    Only for the legacy builder, whose cache is a chain of images: two builds running at once
    would each make their own copy of a step they share, and a later build would follow the
    newer copy, then rebuild what follows it, making a new image of an unchanged service.
    BuildKit's cache is content-addressed and shares such steps itself.
    """
    recipe = cut_recipe(dockerfile_text(repo, settings))
    if recipe is None:
        return
    shared: dict[tuple[str, str], list[str]] = {}
    for service in services:
        third_party = _context_parts(repo, house, service)[THIRD_PARTY]
        arguments = shared_arguments(service_settings(repo.service(service), TO_BUILD))
        shared.setdefault((format_pins(third_party, ""), json.dumps(arguments, sort_keys=True)), []).append(service)
    for index, group in enumerate(shared.values()):
        reporter.step(f"building the {SHARED_STAGE} stage of {', '.join(group)} first, once for the builds that run at once")
        # One after the other: groups share the deps stage, or at least the runtime's base.
        _shared_stage_images(repo, settings, house, group[0], recipe, reporter, no_cache=no_cache and index == 0, base_id=base_id)


def build_from_wheelhouse(
    repo: Repository,
    settings: ImageSettings,
    house: Wheelhouse,
    service: str,
    reporter: Reporter,
    *,
    no_cache: bool = False,
    base_id: str | None = None,
    facts: CommitFacts | None = None,
) -> str:
    """Build the service's image from a wheelhouse already checked, verify it, then tag it;
    return the tag. A failure leaves the tag where it was. `base_id` and `facts`: the base
    image's id and the commit's facts, when the caller has just looked them up."""
    tag = image_tag(repo, settings, service)
    reporter.step(f"building {tag} from {settings.base} (network off during the build)")
    text = dockerfile_text(repo, settings)
    recipe = None if settings.docker.buildkit else cut_recipe(text)
    labels = oci_labels(repo, service, facts or commit_facts(repo))
    if recipe is None:
        image_id = _docker_build(repo, settings, house, service, reporter, text, ALL_PARTS, labels=labels, no_cache=no_cache)
    else:
        base_id = base_id or settings.docker.image_id(settings.base, reporter) or ""

        def own_stages(stages: dict[str, str]) -> str:
            arguments = {Recipe.stage_argument(stage): image for stage, image in stages.items()}
            return _docker_build(repo, settings, house, service, reporter, recipe.own, (FIRST_PARTY,), labels=labels, arguments=arguments, no_cache=no_cache)

        stages = _shared_stage_images(repo, settings, house, service, recipe, reporter, no_cache=no_cache, base_id=base_id)
        try:
            image_id = own_stages(stages)
        except DockerError:
            # The record is taken on trust (one inspection less on every rebuild): when the
            # build fails and a stage image it names is gone, build the stages again, once.
            if settings.docker.image_ids(list(stages.values()), reporter) is not None:
                raise
            reporter.info(f"an image of the shared stages recorded in {STORE}/{STAGES_FILE} is gone: building them again")
            image_id = own_stages(_shared_stage_images(repo, settings, house, service, recipe, reporter, no_cache=no_cache, base_id=base_id, rebuild=True))
    try:
        verify_image(house, settings.docker, image_id, service, service_settings(repo.service(service), TO_BUILD), reporter)
        settings.docker.run("tag", image_id, tag, reporter=reporter, what=f"tagging {tag}")
    except ToolError as error:
        raise DockerError(f"the image of {service} was built but not tagged: {error}") from None
    reporter.info(f"tagged {tag} ({image_id.removeprefix('sha256:')[:12]})")
    return tag


def _shared_stage_images(
    repo: Repository,
    settings: ImageSettings,
    house: Wheelhouse,
    service: str,
    recipe: Recipe,
    reporter: Reporter,
    *,
    no_cache: bool,
    base_id: str,
    rebuild: bool = False,
) -> dict[str, str]:
    """The image id of each shared stage for the service: the recorded ones when they were
    made from the same recipe, base image (`base_id`), installer, closure, kind and port;
    otherwise (or to `rebuild`) built now (the last stage first: the legacy builder makes the
    others on the way, so theirs come from its cache) and recorded."""
    installer = house.installer()
    arguments = shared_arguments(service_settings(repo.service(service), TO_BUILD))
    made_from = json.dumps(
        [recipe.shared, settings.base, installer.sha256, format_pins(_context_parts(repo, house, service)[THIRD_PARTY], ""), arguments], sort_keys=True
    )
    key = hashlib.sha256(made_from.encode()).hexdigest()
    store = repo.root / STORE / STAGES_FILE
    recorded = _read_stages(store).get(key)
    if recorded and not no_cache and not rebuild and recorded["base"] == base_id:
        return dict(recorded["stages"])
    stages: dict[str, str] = {}
    for index, stage in enumerate(reversed(recipe.shared_stages)):
        stages[stage] = _docker_build(
            repo, settings, house, service, reporter, recipe.shared, SHARED_PARTS, target=stage, no_cache=no_cache and index == 0
        )
    records = _read_stages(store)
    records[key] = {"base": base_id, "stages": stages}
    write_atomic(store, json.dumps(records, indent=2, sort_keys=True) + "\n")
    return stages


def _read_stages(store: Path) -> dict[str, dict[str, Any]]:
    """What STAGES_FILE records; nothing when it is missing or not what this module writes (it
    is only a cache: the stages are then built again, from the engine's own cache)."""
    try:
        records = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(records, dict):
        return {}
    return {
        key: value
        for key, value in records.items()
        if isinstance(value, dict)
        and isinstance(value.get("base"), str)
        and isinstance(value.get("stages"), dict)
        and all(isinstance(v, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", v) for v in value["stages"].values())
    }


def _docker_build(
    repo: Repository,
    settings: ImageSettings,
    house: Wheelhouse,
    service: str,
    reporter: Reporter,
    text: str,
    parts: tuple[str, ...],
    *,
    target: str | None = None,
    labels: dict[str, str] | None = None,
    arguments: dict[str, str] | None = None,
    no_cache: bool,
) -> str:
    """`docker build` of `text` from a context of the service's `parts`, offline, up to
    `target` (default: the last stage); return the image id."""
    with _context_directory(repo, service, reporter) as context, tempfile.TemporaryDirectory(prefix="wheelpipe-image-") as tmp:
        # The image's own configuration (the last stage's), not a shared stage's.
        environment = launch.environment(service_settings(repo.service(service), TO_BUILD)) if target is None else None
        prepare_context(repo, house, service, context, text, labels, parts, environment)
        iidfile = Path(tmp) / "image.id"
        args = {"BASE_IMAGE": settings.base, **(arguments or {})}
        if THIRD_PARTY in parts:
            args.update(shared_arguments(service_settings(repo.service(service), TO_BUILD)))
        # --force-rm: the legacy builder otherwise leaves a failed step's container behind.
        argv = ["build", "--network=none", "--force-rm", "--iidfile", str(iidfile), "-f", str(context / DOCKERFILE)]
        if target:
            argv += ["--target", target]
        if no_cache:
            argv.append("--no-cache")
        argv += [arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")]
        what = f"docker build of {service}" if target is None else f"docker build of the {target} stage for {service}"
        try:
            settings.docker.run(*argv, str(context), reporter=reporter, what=what)
        except ToolError as error:
            raise DockerError(f"building the image of {service} failed: {_why_build_failed(error.output) or error}") from None
        return iidfile.read_text().strip()


@contextmanager
def _context_directory(repo: Repository, service: str, reporter: Reporter) -> Iterator[Path]:
    """An empty directory for the service's build context, at the same path for every build.

    BuildKit keeps what it was sent from a path, and then sends only the files whose size or
    time changed: the installer wheel (18 MB) once, not on every build. Builds of the same
    service wait for each other here; the directory is emptied before and after use.
    """
    directory = repo.root / STORE / CONTEXTS / service

    def waiting() -> None:
        reporter.info(f"another build of {service} is using its build context; waiting for it to finish")

    with exclusive_lock(directory.with_name(f"{service}.lock"), waiting):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)


# What either builder adds to a step's output lines: BuildKit a `#<step> <seconds> ` prefix,
# the legacy builder ANSI colour codes around each chunk of a step's stderr, anywhere in a line.
_ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")
_BUILDKIT_PREFIX = re.compile(r"^#\d+ \d+\.\d+ ")


def _why_build_failed(output: str) -> str | None:
    """The reason a build stopped, from its output: the line a check in the Dockerfile printed,
    else the last `error:` line of the step that failed (an installer's), if there is one.

    Both builders also repeat the failed command, whose text holds each check's `echo` with its
    message unexpanded, and BuildKit ends with its own `error: failed to solve`: neither is the
    reason.
    """
    errors = []
    for line in output.splitlines():
        text = _BUILDKIT_PREFIX.sub("", _ANSI_CODE.sub("", line)).strip()
        if "echo" in text:
            continue
        if text.startswith(CHECK_MARKER):
            return text.removeprefix(CHECK_MARKER)
        if text.startswith("error: ") and not text.startswith("error: failed to solve"):
            errors.append(text.removeprefix("error: "))
    return errors[-1] if errors else None


class _PrefixedLines:
    """A stream for one of several concurrent builds: whole lines, each starting with a prefix,
    so that lines of different builds never mix within a line."""

    def __init__(self, stream: TextStream, prefix: str, lock: threading.Lock) -> None:
        self._stream, self._prefix, self._lock, self._pending = stream, prefix, lock, ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        if lines:
            with self._lock:
                self._stream.write("".join(f"{self._prefix}{line}\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()


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
    digest: str = next((d for d in reversed(said) if f"{repository}@{d}" in digests), digests[0].partition("@")[2])
    reporter.info(f"pushed {repository}@{digest}")
    return digest
