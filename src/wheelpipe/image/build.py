"""`invoke image`: each service's runtime image, built offline from the wheelhouse, verified, tagged.

The build runs with `--network=none`; the image is verified against the install manifest
(verify.py) before it is tagged, so a tag only ever names a verified image. With the legacy
builder the recipe is cut (recipe.Recipe) and the stages services share are built once per
closure and port, their image ids recorded in the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import baseimage, emulation
from ..console import TextStream, current, in_context, parallel, report, reporting
from ..errors import DockerError, ToolError
from ..fsutil import write_atomic
from ..lockfile import format_pins
from ..model import Repository, service_settings
from ..target import Target
from ..wheelhouse import STORE, Wheelhouse, build_wheels
from .context import ALL_PARTS, DOCKERFILE, FIRST_PARTY, SHARED_PARTS, THIRD_PARTY, context_directory, prepare_context
from .recipe import SHARED_STAGE, Recipe, checked_recipe, cut_recipe
from .record import TO_BUILD, ImageSettings, ServiceImage, commit_facts, image_tag, service_image
from .verify import verify_image

# How a check in the Dockerfile starts the line saying why it stopped the build.
CHECK_MARKER = "image check: "
# Under the wheelhouse store: the image ids of shared stages already built, by what made them.
STAGES_FILE = "image-stages.json"


def require_base(repo: Repository, settings: ImageSettings, target: Target) -> str:
    """The base image's id, once it is known to exist and to match the target."""
    docker = settings.docker
    base_id = docker.image_id(settings.base)
    if not base_id:
        # Only now is it worth a `docker info`: an unreachable engine is the likelier cause.
        docker.require_engine()
        msg = f"base image {settings.base} is not present: {baseimage.how_to_get(settings.base, target)}"
        raise DockerError(msg)
    if emulation.is_foreign(target.machine):
        emulation.require_runs(target.machine, f"building the {target.machine} images from {settings.base}")
    baseimage.check_matches_target(docker, settings.base, target, cache=repo.root / STORE / "base-images.json", image_id=base_id)
    return base_id


def target_settings(repo: Repository, settings: ImageSettings, target: Target) -> ImageSettings:
    """The settings of the target's images: its own base image (baseimage.base_for)."""
    return dataclasses.replace(settings, base=baseimage.base_for(settings.base, target, repo.targets))


def build_image(repo: Repository, settings: ImageSettings, service: str, *, no_cache: bool = False, targets: tuple[Target, ...] | None = None) -> str:
    """Build, verify, then tag; return the (last) tag. A failure anywhere leaves every tag where it was."""
    return build_images(repo, settings, [service], no_cache=no_cache, targets=targets)[-1]


def build_images(
    repo: Repository, settings: ImageSettings, services: list[str], *, no_cache: bool = False, jobs: int = 0, targets: tuple[Target, ...] | None = None,
) -> list[str]:
    """Build, verify and tag each service's image for each of `targets` (default: every target
    the repository declares), up to `jobs` at once (0: one per core); return the tags in order
    (by target, then service).

    Each target's base and the wheelhouse are checked once for all, and each service resolved
    once per target into its record (record.ServiceImage). With more than one service every
    output line starts with the service's name. A failure names its service and leaves that
    service's tag where it was; builds not started yet are not started. With several targets
    the plain tag <prefix><service>:<version> then names this host's architecture's image.
    """
    for service in services:
        service_settings(repo.service(service), TO_BUILD)  # before anything is checked or built
    text = checked_recipe(repo, settings)  # an override that fetches or runs as root: never built
    chosen = {target: target_settings(repo, settings, target) for target in targets or repo.targets}
    with ThreadPoolExecutor(max_workers=1) as pool:
        # git's answers about the commit, while the wheelhouse is brought up to date.
        asked = pool.submit(in_context(commit_facts), repo)
        bases = {target: require_base(repo, own, target) for target, own in chosen.items()}
        house = build_wheels(repo, service=services[0] if len(services) == 1 else None).wheelhouse
        facts = asked.result()
    tags: list[str] = []
    for target, own in chosen.items():
        images = [service_image(repo, own, house, service, facts, target) for service in services]
        tags += _build_for_target(ImageBuild(own, house, repo.root / STORE, text, bases[target], no_cache), images, jobs)
    host = next((t for t in chosen if t.machine == emulation.host_machine()), None)
    if len(repo.targets) > 1 and host is not None:
        for service in services:
            plain, own_tag = image_tag(repo, settings, service), image_tag(repo, settings, service, host)
            settings.docker.run("tag", own_tag, plain, what=f"tagging {plain}")
            report.info(f"tagged {plain} as {own_tag}, this host's architecture's")
    return tags


def _build_for_target(run: ImageBuild, images: list[ServiceImage], jobs: int) -> list[str]:
    settings = run.settings
    workers = min(jobs if jobs > 0 else os.cpu_count() or 1, len(images))
    if workers == 1:
        return [run.build(image) for image in images]
    if not settings.docker.buildkit:
        run.build_shared_stages(images)
        run = dataclasses.replace(run, no_cache=False)  # what the services share was just built; the rest is new anyway
    lines = threading.Lock()

    def build(image: ServiceImage) -> str:
        with reporting(dataclasses.replace(current(), stream=_PrefixedLines(report.stream, f"{image.service}: ", lines))):
            return run.build(image)

    return parallel(build, images, workers=workers)


@dataclass(frozen=True)
class ImageBuild:
    """What every image of one run is built with: the settings, a wheelhouse already checked,
    the store, the recipe's text and the base image's id."""

    settings: ImageSettings
    house: Wheelhouse
    store: Path
    recipe_text: str
    base_id: str
    no_cache: bool = False

    def build(self, image: ServiceImage) -> str:
        """Build the service's image, verify it, then tag it; return the tag. A failure leaves
        the tag where it was."""
        docker = self.settings.docker
        emulated = f", {image.target.machine} emulated by qemu" if emulation.is_foreign(image.target.machine) else ""
        report.step(f"building {image.tag} from {self.settings.base} (network off during the build{emulated})")
        recipe = None if docker.buildkit else cut_recipe(self.recipe_text)
        if recipe is None:
            image_id = self._docker_build(image, self.recipe_text, ALL_PARTS)
        else:

            def own_stages(stages: dict[str, str]) -> str:
                arguments = {Recipe.stage_argument(stage): built for stage, built in stages.items()}
                return self._docker_build(image, recipe.own, (FIRST_PARTY,), arguments=arguments)

            stages = self._shared_stage_images(image, recipe)
            try:
                image_id = own_stages(stages)
            except DockerError:
                # The record is taken on trust (one inspection less on every rebuild): when the
                # build fails and a stage image it names is gone, build the stages again, once.
                if docker.image_ids(list(stages.values())) is not None:
                    raise
                report.info(f"an image of the shared stages recorded in {STORE}/{STAGES_FILE} is gone: building them again")
                image_id = own_stages(self._shared_stage_images(image, recipe, rebuild=True))
        try:
            verify_image(self.house, docker, image_id, image)
            docker.run("tag", image_id, image.tag, what=f"tagging {image.tag}")
        except ToolError as error:
            raise DockerError(f"the image of {image.service} was built but not tagged: {error}") from None
        report.info(f"tagged {image.tag} ({image_id.removeprefix('sha256:')[:12]})")
        return image.tag

    def build_shared_stages(self, images: list[ServiceImage]) -> None:
        """Build the stages services share (deps and runtime-deps), once each, before the services.

        Only for the legacy builder, whose cache is a chain of images: two builds running at once
        would each make their own copy of a step they share, and a later build would follow the
        newer copy, then rebuild what follows it, making a new image of an unchanged service.
        BuildKit's cache is content-addressed and shares such steps itself.
        """
        recipe = cut_recipe(self.recipe_text)
        if recipe is None:
            return
        shared: dict[tuple[str, str], list[ServiceImage]] = {}
        for image in images:
            key = (format_pins(list(image.third_party), ""), json.dumps(image.shared_arguments, sort_keys=True))
            shared.setdefault(key, []).append(image)
        for index, group in enumerate(shared.values()):
            report.step(f"building the {SHARED_STAGE} stage of {', '.join(i.service for i in group)} first, once for the builds that run at once")
            # One after the other: groups share the deps stage, or at least the runtime's base.
            once = self if index == 0 else dataclasses.replace(self, no_cache=False)
            once._shared_stage_images(group[0], recipe)

    def _shared_stage_images(self, image: ServiceImage, recipe: Recipe, *, rebuild: bool = False) -> dict[str, str]:
        """The image id of each shared stage for the service: the recorded ones when they were
        made from the same recipe, base image, installer, closure, kind and port; otherwise (or
        to `rebuild`) built now (the last stage first: the legacy builder makes the others on
        the way, so theirs come from its cache) and recorded."""
        installer = self.house.installer(image.target)
        made_from = json.dumps(
            [recipe.shared, self.settings.base, installer.sha256, format_pins(list(image.third_party), ""), image.shared_arguments], sort_keys=True
        )
        key = hashlib.sha256(made_from.encode()).hexdigest()
        store = self.store / STAGES_FILE
        recorded = _read_stages(store).get(key)
        if recorded and not self.no_cache and not rebuild and recorded["base"] == self.base_id:
            return dict(recorded["stages"])
        stages: dict[str, str] = {}
        for index, stage in enumerate(reversed(recipe.shared_stages)):
            stages[stage] = self._docker_build(image, recipe.shared, SHARED_PARTS, target=stage, no_cache=self.no_cache and index == 0)
        records = _read_stages(store)
        records[key] = {"base": self.base_id, "stages": stages}
        write_atomic(store, json.dumps(records, indent=2, sort_keys=True) + "\n")
        return stages

    def _docker_build(
        self, image: ServiceImage, text: str, parts: tuple[str, ...], *,
        target: str | None = None, arguments: dict[str, str] | None = None, no_cache: bool | None = None,
    ) -> str:
        """`docker build` of `text` from a context of the service's `parts`, offline, up to
        `target` (default: the last stage, the image itself); return the image id."""
        with context_directory(self.store, image.service) as context, tempfile.TemporaryDirectory(prefix="wheelpipe-image-") as tmp:
            prepare_context(self.house, image, context, text, parts, final=target is None)
            iidfile = Path(tmp) / "image.id"
            args = {"BASE_IMAGE": self.settings.base, **(arguments or {})}
            if THIRD_PARTY in parts:
                args.update(image.shared_arguments)
            # --force-rm: the legacy builder otherwise leaves a failed step's container behind.
            argv = ["build", "--network=none", "--force-rm", "--iidfile", str(iidfile), "-f", str(context / DOCKERFILE)]
            if target:
                argv += ["--target", target]
            if self.no_cache if no_cache is None else no_cache:
                argv.append("--no-cache")
            argv += [arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")]
            what = f"docker build of {image.service}" if target is None else f"docker build of the {target} stage for {image.service}"
            try:
                self.settings.docker.run(*argv, str(context), what=what)
            except ToolError as error:
                raise DockerError(f"building the image of {image.service} failed: {_why_build_failed(error.output) or error}") from None
            return iidfile.read_text().strip()


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
