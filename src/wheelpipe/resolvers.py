"""The resolvers that turn requirement inputs into hashed locks: uv (default) and pip-tools.

Both write the same lock format (`name==version`, every `--hash`, `# via` notes, a header
naming `invoke lock`), resolve for the declared target rather than the host where they can,
and take nothing from the machine's installer configuration: they run in the clean tool
environment, are told the repository's indexes explicitly, and never reuse a hash from the
lock they replace (an edited hash must not survive `invoke lock`).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from .console import report
from .errors import RepositoryError, ResolutionError, ToolError
from .index import Indexes
from .lockfile import canonical_lock, lock_text, parse_pins, via_notes
from .target import Target, check_host
from .tools import run

COMPILE_COMMAND = "invoke lock"
PER_TARGET = "per-target"  # under a job's workdir: each platform's own resolution, before the merge


@dataclass(frozen=True)
class Job:
    """One lock to compile, paths relative to `workdir`."""

    workdir: Path
    output: str
    sources: tuple[str, ...]
    constraints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options:
    targets: tuple[Target, ...]  # one lock serves them all: each is resolved, the results must agree
    indexes: Indexes
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()


class Resolver:
    name = ""

    def prepare(self, targets: tuple[Target, ...]) -> None:
        """Fail early when this host cannot resolve for the targets with this resolver."""

    def compile(self, job: Job, options: Options) -> None:
        """Write job.output: the lock for every target. Each target is resolved on its own
        (seeded by the same current lock); one lock serves them all only when they agree on
        every pin, and it then holds each pin's hashes as every resolution found them."""
        if len(options.targets) == 1:
            self.resolve(job, job.output, options.targets[0], options)
            _canonicalize(job.workdir / job.output, job.output)
            return
        current = job.workdir / job.output
        resolved = []
        for target in options.targets:
            output = f"{PER_TARGET}/{target.machine}/{job.output}"
            (job.workdir / output).parent.mkdir(parents=True, exist_ok=True)
            if current.exists():
                shutil.copy2(current, job.workdir / output)
            self.resolve(job, output, target, options)
            _canonicalize(job.workdir / output, job.output)
            resolved.append((target, job.workdir / output))
        current.write_text(merged_lock(resolved, job.output))

    def resolve(self, job: Job, output: str, target: Target, options: Options) -> None:
        """Resolve job's sources for `target` into `output` (relative to job.workdir; the
        current lock, if any, is already there to seed it)."""
        raise NotImplementedError


class Uv(Resolver):
    """`uv pip compile` for the target's interpreter and platform, from any host."""

    name = "uv"

    def resolve(self, job: Job, output: str, target: Target, options: Options) -> None:
        if (job.workdir / output).exists():
            # uv takes the hashes of an existing output file as they are; keep only its
            # pins, which seed the resolution, so that every hash comes from the index.
            _strip_hashes(job.workdir / output)
        argv = [
            sys.executable, "-m", "uv", "pip", "compile", "--no-config", "--quiet",
            # This interpreter only hosts the resolution, which is for --python-version: without
            # it uv looks for (and tries to download) an interpreter of the target's version.
            "--python", sys.executable, "--no-python-downloads",
            "--generate-hashes", "--strip-extras",
            "--python-version", target.python_version,
            "--python-platform", target.uv_platform(),
            "--custom-compile-command", COMPILE_COMMAND,
            "--index-url", options.indexes.urls[0],
            *(f"--extra-index-url={url}" for url in options.indexes.urls[1:]),
        ]
        argv += _job_arguments(job, output, options)
        for_target = f" for {target.machine}" if len(options.targets) > 1 else ""
        report.info(f"resolving {job.output}{for_target} with uv")
        try:
            run(argv, what=f"uv pip compile of {job.output}{for_target}", cwd=job.workdir)
        except ToolError as error:
            raise _unresolvable(job, for_target, _uv_reason(error.output), str(error), _pinned(error.output, job)) from None


class PipTools(Resolver):
    """pip-compile: resolves with the host's interpreter, which must therefore be the target's."""

    name = "pip-tools"

    def prepare(self, targets: tuple[Target, ...]) -> None:
        if len(targets) > 1:
            platforms = ", ".join(target.platform for target in targets)
            msg = f"pip-tools resolves with this host's interpreter, so for one platform only, but pyproject.toml [tool.wheelpipe.target] platforms names {len(targets)} ({platforms}): lock with uv (the default resolver)"
            raise RepositoryError(msg)
        check_host(targets[0], "resolve the locks with pip-tools")

    def resolve(self, job: Job, output: str, target: Target, options: Options) -> None:
        argv = [
            sys.executable, "-m", "piptools", "compile", "--no-config", "--quiet",
            "--generate-hashes", "--no-reuse-hashes", "--allow-unsafe", "--strip-extras",
            "--no-emit-index-url", "--no-emit-find-links", "--no-emit-trusted-host",
            *options.indexes.pip_options(), "--pip-args=--isolated",
        ]
        argv += _job_arguments(job, output, options)
        report.info(f"resolving {job.output} with pip-tools")
        try:
            run(argv, what=f"pip-compile of {job.output}", cwd=job.workdir, env={"CUSTOM_COMPILE_COMMAND": COMPILE_COMMAND})
        except ToolError as error:
            raise _unresolvable(job, "", _pip_conflict(error.output, job), str(error)) from None


RESOLVERS: dict[str, type[Resolver]] = {"uv": Uv, "pip-tools": PipTools}


def resolver(name: str, where: str) -> Resolver:
    try:
        return RESOLVERS[name]()
    except KeyError:
        msg = f"{where}: unknown resolver {name!r}: expected one of {', '.join(RESOLVERS)}"
        raise RepositoryError(msg) from None


def _canonicalize(output: Path, label: str) -> None:
    output.write_text(canonical_lock(output, label))


def merged_lock(resolved: Sequence[tuple[Target, Path]], label: str) -> str:
    """One lock for every target: their resolutions, which must pin the same packages at the
    same versions, with the union of the hashes each found. A package one target needs and
    another does not, or at another version, is refused: a service installs the same
    versions wherever it runs, so what is tested on one architecture is what runs on the other."""
    locks = [(target, parse_pins(path, label), via_notes(path.read_text())) for target, path in resolved]
    names = sorted(set().union(*(pins for _, pins, _ in locks)))
    for name in names:
        versions = [(target.machine, pins[name].version if name in pins else None) for target, pins, _ in locks]
        if len({version for _, version in versions}) > 1:
            found = ", ".join(f"{version} on {machine}" if version else f"not needed on {machine}" for machine, version in versions)
            msg = f"{label}: the platforms resolve {name} differently ({found}); one lock serves every platform of [tool.wheelpipe.target]: require a version of {name} every platform can install"
            raise ResolutionError(msg, msg)
    pins = {name: replace(locks[0][1][name], hashes=frozenset().union(*(p[name].hashes for _, p, _ in locks))) for name in names}
    notes = {name: sorted(set().union(*(n.get(name, []) for _, _, n in locks))) for name in names}
    return lock_text(pins, notes)


def _job_arguments(job: Job, output: str, options: Options) -> list[str]:
    """What both resolvers take alike: upgrades, constraints, the output and the inputs."""
    argv = ["--upgrade"] if options.upgrade else []
    for name in options.upgrade_packages:
        argv += ["--upgrade-package", name]
    for constraint in job.constraints:
        argv += ["--constraint", constraint]
    return [*argv, "--output-file", output, *job.sources]


def _strip_hashes(lock: Path) -> None:
    if "--hash=" not in lock.read_text():
        return  # already pins only (a seed made from a team's existing pins)
    pins = parse_pins(lock, lock.name)
    lock.write_text("".join(f"{pin.requirement_line()}\n" for pin in sorted(pins.values(), key=lambda p: p.name)))


def _unresolvable(job: Job, for_target: str, reason: str, failure: str, pinned: Sequence[str] = ()) -> ResolutionError:
    """The one line of a resolution that failed: the lock, the platform when there are several,
    its inputs, the constraint pins the reason involves, then the resolver's reason (or, with
    none, the failure itself)."""
    said = "; ".join([*pinned, reason]) if reason else failure
    return ResolutionError(f"{job.output}: cannot resolve {' + '.join(job.sources)}{for_target}: {said}", reason or failure)


def _uv_reason(output: str) -> str:
    """uv's explanation of a failed resolution on one line.

    uv says `error: No solution found ...` then `cause: Because ...` lines (or, for other
    failures, just `error: ...`); keep what explains, drop the labels.
    """
    reasons = []
    for line in output.splitlines():
        text = line.strip(" ×╰─▶│\t")
        label, _, rest = text.partition(": ")
        if label.lower() in ("error", "cause", "caused by", "warning"):
            text = rest
        if text and not text.lower().startswith(("hint", "help", "no solution found when resolving")):
            reasons.append(text)
    return re.sub(r"\s+", " ", " ".join(reasons)) if reasons else ""


def _pinned(output: str, job: Job) -> list[str]:
    """`<lock> pins name==version` for each constraint pin uv's explanation names."""
    text = _uv_reason(output)
    pinned = []
    for constraint in job.constraints:
        pins = parse_pins(job.workdir / constraint, constraint)
        for name in sorted(pins):
            if text and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE):
                pinned.append(f"{constraint} pins {name}=={pins[name].version}")
    return pinned


_REQUIREMENT_INFO = re.compile(r"SpecifierRequirement\('(?P<spec>[^']+)'\), parent=(?:\w+Candidate\('(?P<link>[^' ]+)|None)")


def _pip_conflict(output: str, job: Job) -> str:
    """Name the package, each requirement on it, and the service lock pinning it.

    pip-compile --quiet hides pip's own explanation, but the ResolutionImpossible it
    raises still lists every requirement in the conflict and who asked for it.
    """
    found = _REQUIREMENT_INFO.findall(output)
    if not found:
        return ""
    wanted = []
    for spec, link in found:
        parent = "a direct requirement"
        if link:
            name, version = link.rsplit("/", 1)[-1].split("-")[:2]
            parent = f"{canonicalize_name(name)} {version}"
        wanted.append(f"{parent} requires {spec}")
    package = canonicalize_name(re.split(r"[<>=!~;\[ ]", found[0][0], maxsplit=1)[0])
    pinned = [f"{c} pins {package}=={pins[package].version}" for c in job.constraints if package in (pins := parse_pins(job.workdir / c, c))]
    return f"{package}: " + "; ".join([*pinned, *wanted])
