"""The image recipe: which Dockerfile, what it may do (checked before anything is built), and
where the legacy builder cuts it.

A Dockerfile override (dockerfiles/service.Dockerfile, or --dockerfile) is code a pull request
can change. `docker build --network=none` cuts only RUN steps off the network: the daemon
itself still fetches what `ADD https://...` names, pulls any image a `FROM` or `COPY --from`
names that it lacks, and BuildKit honours `RUN --network=host`. And whatever the stages do, the
image runs as the last stage's user. So before a build the recipe is read as the builder reads
it and refused, in one line naming the file, the line and the instruction, when it fetches
from anywhere, starts from an image other than the base it is given, or leaves the image
running as root.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import DockerError
from ..model import DOCKERFILES_DIR, Repository
from ..resources import service_dockerfile
from .context import DOCKERFILE
from .record import ImageSettings

# The Dockerfile's stage holding every layer of the image but the service's own.
SHARED_STAGE = "runtime-deps"

# The build arguments a FROM may start from: the base image, and the stand-ins the legacy
# builder's cut recipe gives for shared stages (Recipe.stage_argument), each an image id.
BASE_ARGUMENT = "BASE_IMAGE"
STAND_IN_PREFIX = "WHEELPIPE_STAGE_"
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
_ROOT_USERS = {"root", "0"}


class RecipeError(DockerError):
    """The recipe does what no image build of the pipeline may do."""


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts in the file, 1-based
    keyword: str  # upper case
    arguments: str  # the rest, continuation lines joined


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: comments and blank lines dropped, lines ending in a
    backslash joined to the next (the default escape character), as the builder reads them."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as the builder does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        joined = " ".join(part.strip() for part in pending if part.strip())
        keyword, _, arguments = joined.partition(" ")
        found.append(Instruction(start, keyword.upper(), arguments.strip()))
        pending = []
    if pending:
        joined = " ".join(pending)
        keyword, _, arguments = joined.partition(" ")
        found.append(Instruction(start, keyword.upper(), arguments.strip()))
    return found


def _flags(arguments: str) -> tuple[dict[str, list[str]], list[str]]:
    """An instruction's --flags (by name, every value) and its other words."""
    try:
        words = shlex.split(arguments)
    except ValueError:
        words = arguments.split()
    flags: dict[str, list[str]] = {}
    rest: list[str] = []
    for index, word in enumerate(words):
        if word.startswith("--") and not rest:
            name, _, value = word[2:].partition("=")
            flags.setdefault(name.lower(), []).append(value)
        else:
            rest = words[index:]
            break
    return flags, rest


def _resolved(source: str) -> list[str]:
    """The stage names a FROM can mean: itself, or with the build arguments the pipeline passes
    put in (SERVICE_RUNTIME: the runtime-<kind> stage of each kind, record.shared_arguments);
    [] when it names another argument, which the pipeline never sets."""
    names = [source]
    for variable, values in PIPELINE_ARGUMENTS.items():
        pattern = re.compile(rf"\$(\{{{variable}\}}|{variable}\b)")
        names = [pattern.sub(value, name) for name in names for value in (values if pattern.search(name) else ("",))]
    return [] if any("$" in name for name in names) else names


# The build arguments the pipeline passes that a FROM may name, and every value each can take.
PIPELINE_ARGUMENTS = {"SERVICE_RUNTIME": ("http", "worker", "worker-health")}


def check(text: str, where: str) -> None:  # noqa: C901 - one pass over the instructions, as the builder reads them; a branch per instruction the builder would act on
    """Refuse a recipe that can fetch, starts from another image, or runs as root (RecipeError)."""
    stages: dict[str, str | None] = {}  # stage name -> its user (None: the base image's, root)
    user: str | None = None
    last_stage = ""
    count = 0
    for instruction in instructions(text):
        at = f"{where}:{instruction.line}: {instruction.keyword}"
        flags, words = _flags(instruction.arguments)
        if instruction.keyword == "FROM":
            source = words[0] if words else ""
            named = [name.lower() for name in _resolved(source)]
            if named and all(name in stages for name in named):
                users = {stages[name] for name in named}
                user = users.pop() if len(users) == 1 else None  # stages that differ: the worst, root
            elif re.fullmatch(rf"\$\{{?({BASE_ARGUMENT}|{STAND_IN_PREFIX}\w+)\}}?", source):
                user = None
            else:
                msg = f"{at} {source}: a stage may start only from ${{{BASE_ARGUMENT}}} or an earlier stage; any other image would be pulled by the daemon, past --network=none"
                raise RecipeError(msg)
            count += 1
            last_stage = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else f"#{count}"
            stages[last_stage] = user
        elif instruction.keyword == "ADD":
            remote = [word for word in words[:-1] if _REMOTE.match(word)]
            if remote:
                msg = f"{at} {remote[0]}: a remote source is fetched by the daemon whatever --network says; put the file in the wheelhouse (or the context) instead"
                raise RecipeError(msg)
        elif instruction.keyword == "COPY":
            for source in flags.get("from", []):
                if source.lower() not in stages and not source.isdigit():
                    msg = f"{at} --from={source}: copies from an image that is no earlier stage, which the daemon would pull past --network=none"
                    raise RecipeError(msg)
        elif instruction.keyword == "RUN":
            for network in flags.get("network", []):
                if network != "none":
                    msg = f"{at} --network={network}: a build step may run only without a network (--network=none)"
                    raise RecipeError(msg)
            for mount in flags.get("mount", []):
                if re.search(r"(^|,)type=(ssh|secret)(,|$)", mount):
                    msg = f"{at} --mount={mount}: hands the step a credential of the build host; image builds take none"
                    raise RecipeError(msg)
        elif instruction.keyword == "USER":
            user = words[0] if words else ""
            stages[last_stage] = user
        elif instruction.keyword == "ONBUILD":
            msg = f"{at}: runs in whatever image builds FROM this one, where no check sees it"
            raise RecipeError(msg)
    if count == 0:
        msg = f"{where}: no FROM instruction: not a Dockerfile"
        raise RecipeError(msg)
    final = stages[last_stage]
    if final is None or final.partition(":")[0].lower() in _ROOT_USERS or not final:
        found = "sets no USER (the base image's root)" if final is None else f"runs as USER {final}"
        msg = f"{where}: the image's last stage {found}; it must run as an unprivileged user (e.g. USER 10001:10001)"
        raise RecipeError(msg)


# --- which recipe, and where the legacy builder cuts it ------------------------------------


def recipe_path(repo: Repository, settings: ImageSettings) -> Path:
    """The Dockerfile: the settings', else the monorepo's own dockerfiles/service.Dockerfile
    (a team's place for what its runtime images need beyond ours), else the one wheelpipe ships."""
    if settings.dockerfile:
        return settings.dockerfile
    own = repo.root / DOCKERFILES_DIR / DOCKERFILE
    return own if own.is_file() else service_dockerfile()


def dockerfile_text(repo: Repository, settings: ImageSettings) -> str:
    return recipe_path(repo, settings).read_text()


def checked_recipe(repo: Repository, settings: ImageSettings) -> str:
    """The recipe's text, once `check` found nothing an image build may not do."""
    path = recipe_path(repo, settings)
    where = repo.relative(path) if path.is_relative_to(repo.root) else str(path)
    text = path.read_text()
    check(text, where)
    return text


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
        return STAND_IN_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", stage).upper()


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
