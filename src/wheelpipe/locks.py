"""`invoke lock`: hashed per-service locks and the tooling lock layered on them.

Layering: each service's third-party closure is derived from the pyproject.toml files
of the service and the internal packages it uses, written to a generated
requirements/<service>.in and compiled with hashes into requirements/<service>.txt.
Services are deployed apart, so each service's lock stands alone: two services may pin
different versions of a package (reported, not refused; `[tool.wheelpipe.lock] one-version`
refuses it). The tooling lock (requirements/dev.txt) is compiled from requirements/dev.in
plus every service's .in, constrained by the service locks wherever they agree, so the
tooling pins what the services pin unless the services themselves differ.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from . import index, resolvers, teampins
from .build import environment, sdists
from .console import parallel, quiet, report
from .errors import LockError, ResolutionError, StaleLockError
from .fsutil import write_atomic
from .lockfile import Pin, parse_pins
from .model import Repository, StaleBuildLockError
from .requirements import BUILD, REQUIREMENTS_DIR, SDIST_LOCKS_DIR, TOOLING, Divergence, divergences, lock_file, sdist_lock_file
from .workspace import load_repository

# A monorepo that adopts the pipeline has no requirements/dev.in yet; `invoke lock` starts one
# with everything the installed wheelpipe imports or runs, so the tooling venv installs
# hash-checked from dev.txt and wheelpipe itself from its wheel with --no-deps (it need not be
# on the index). Whatever wheelpipe declares, these two are in it: uv, whose pin build-wheels
# takes into the wheelhouse as the images' installer; pytest, which `invoke test` and the
# release gate run. (The packages' build backends are in the build lock, not here.)
PIPELINE = "wheelpipe"
ALWAYS_TOOLING = ("pytest", "uv")
_TOOLING_HEADER = """\
# The tooling: what the `invoke` tasks and the tests run with. `invoke lock` wrote this file
# because the repository had none; it is yours to edit from now on. It compiles into dev.txt
# together with every service's .in, constrained by the service locks where they agree. It starts with what
# the pipeline (wheelpipe) needs, among them uv (the images' installer) and pytest; the
# packages' build backends are in the build lock (build.in, build.txt). Set up the tooling venv with
#   pip install --require-hashes -r requirements/dev.txt && pip install --no-deps <the wheelpipe wheel>
"""

_MACHINE_SPECIFIC = re.compile(r"(file:|--find-links|--index-url|--extra-index-url|--trusted-host|(^|\s)/\S)")


def default_tooling_input() -> str:
    """requirements/dev.in for a monorepo that has none: the installed wheelpipe's requirements."""
    try:
        declared = metadata.requires(PIPELINE) or []
    except metadata.PackageNotFoundError:
        msg = f"{lock_file(TOOLING, 'in')}: missing, and {PIPELINE} is not installed as a distribution whose requirements could start it; write it by hand or install {PIPELINE}"
        raise LockError(msg) from None
    wanted = {canonicalize_name(name): name for name in ALWAYS_TOOLING}
    for line in declared:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):  # not an optional extra's
            wanted[canonicalize_name(requirement.name)] = str(requirement)
    return _TOOLING_HEADER + "".join(f"{wanted[name]}\n" for name in sorted(wanted))


def _check_portable(path: Path, label: str) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.lstrip().startswith("#") and _MACHINE_SPECIFIC.search(line):
            msg = f"{label}:{number}: machine-specific line in a lock (paths and index options must not be committed): {line.strip()}"
            raise LockError(msg)


def _one_version_refusal(divergent: list[Divergence]) -> str:
    """[tool.wheelpipe.lock] one-version = true: the first package the service locks disagree on, in one line."""
    first = divergent[0]
    more = f" (and {len(divergent) - 1} more packages)" if len(divergent) > 1 else ""
    return (
        f"{first.name}: [tool.wheelpipe.lock] one-version = true, but the service locks pin {first.name} {first.describe()}{more}; "
        f"lock them to one version (`invoke lock --upgrade-package {first.name}`, or `{first.name}==VERSION`)"
    )


def _tooling_workdir(work: Path, services: list[str], locks: Mapping[str, Mapping[str, Pin]], divergent: list[Divergence]) -> Path:
    """A copy of `work`'s inputs for the tooling lock in which each service lock holds only
    the packages the services agree on: the tooling's constraints, under the locks' own names
    (the resolvers write them into the `# via` notes)."""
    left_out = {d.name for d in divergent}
    directory = work / "tooling"
    (directory / REQUIREMENTS_DIR).mkdir(parents=True)
    for name in [TOOLING, *services]:
        shutil.copy2(work / lock_file(name, "in"), directory / lock_file(name, "in"))
    if (work / lock_file(TOOLING)).exists():
        shutil.copy2(work / lock_file(TOOLING), directory / lock_file(TOOLING))
    for name in services:
        (directory / lock_file(name)).write_text(_pins_text(pin for pin in locks[name].values() if pin.name not in left_out))
    return directory


def _pins_text(pins: Iterable[Pin]) -> str:
    """Hashed pins, one line each, as a constraint file for a resolver."""
    return "".join(f"{pin.requirement_line()} {' '.join(f'--hash=sha256:{h}' for h in sorted(pin.hashes))}\n" for pin in sorted(pins, key=lambda p: p.name))


# A lock checked out with CRLF line ends (git's core.autocrlf, an editor on Windows) parses to
# the same pins and lines, so no diff shows it: it is said so instead.
_CRLF_ONLY = "CRLF line ends, where `invoke lock` writes LF (the content matches its inputs)"
_CRLF_FIX = "run `invoke lock`, and keep git from converting them (`requirements/** text eol=lf` in .gitattributes)"


def _orphaned(services: list[str]) -> str:
    named = ", ".join(repr(name) for name in services)
    return f"generated by `invoke lock` for service {named}, which the repository no longer has" if len(services) == 1 else f"generated by `invoke lock` for services {named}, which the repository no longer has"


def _diff(old: Path, new: Path, label: str) -> list[str]:
    """What differs, one line each: pins moved, hashes added or missing, else the text."""
    if not new.exists():
        return [f"- {label} (no longer needed)"]
    if not old.exists():
        return [f"+ {label} (missing)"]
    if b"\r" in old.read_bytes() and old.read_bytes().replace(b"\r\n", b"\n") == new.read_bytes():
        return [_CRLF_ONLY]
    if label.endswith(".txt"):
        before, after = parse_pins(old, label), parse_pins(new, label)
        lines = [f"- {before[n].requirement_line()}" for n in sorted(before) if n not in after or before[n].version != after[n].version]
        lines += [f"+ {after[n].requirement_line()}" for n in sorted(after) if n not in before or before[n].version != after[n].version]
        for name in sorted(set(before) & set(after)):
            was, now = before[name], after[name]
            if was.version != now.version:
                continue
            lines += [f"{label}: {now.requirement_line()}: hash sha256:{h} is not published for this version" for h in sorted(was.hashes - now.hashes)]
            lines += [f"{label}: {now.requirement_line()}: hash sha256:{h} is published but missing from the lock" for h in sorted(now.hashes - was.hashes)]
        if lines:
            return lines
    changed = difflib.unified_diff(old.read_text().splitlines(), new.read_text().splitlines(), lineterm="", n=0)
    return [f"{line[0]} {line[1:]}" for line in changed if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def _upgrade_names(specs: tuple[str, ...]) -> dict[str, str]:
    """Each --upgrade-package by its canonical name (-> what was given), before anything resolves."""
    names: dict[str, str] = {}
    for spec in specs:
        try:
            names[canonicalize_name(Requirement(spec).name)] = spec
        except InvalidRequirement:
            msg = f"--upgrade-package {spec!r}: expected a package name, optionally ==VERSION"
            raise LockError(msg) from None
    return names


def _pinned_names(work: Path, directory: str) -> set[str]:
    """Every name the locks `invoke lock` wrote in `work`/`directory` pin."""
    return {name for lock in _generated_locks(work / directory) for name in parse_pins(lock, f"{directory}/{lock.name}")}


def _generated_locks(directory: Path) -> list[Path]:
    """The .txt files in `directory` that `invoke lock` wrote (they start with its header).
    Any other is the team's own (docs.txt, a hand-kept constraints file, unhashed): never
    read as a lock, never touched."""
    return [path for path in sorted(directory.glob("*.txt")) if _is_generated(path)]


def _is_generated(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as stream:
        return stream.read(len(_GENERATED)) == _GENERATED.encode()


def _check_upgrade_packages(repo: Repository, names: dict[str, str], known: set[str]) -> None:
    """An --upgrade-package that no lock pins (before or after this run) and no service
    requires is a typo, not a no-op. Checked after resolving: before a repository's first
    lock, only the resolution knows what its services' closures hold."""
    for service in repo.services:
        known |= {canonicalize_name(Requirement(line).name) for line in repo.third_party_requirements(service)}
    for name, spec in names.items():
        if name not in known:
            msg = f"--upgrade-package {spec!r}: no lock pins {name} and no service requires it"
            raise LockError(msg)


def _why_moved(
    explain: Callable[[str, str, str], str | None],
    service: str,
    moved: dict[str, str],
    requirements: list[Requirement],
    repo: Repository,
    upgrade: bool,
    upgrade_names: dict[str, str],
) -> dict[str, str]:
    """Why each of the team's pins (name -> its version) moved in the service's first lock.

    Only what is true is said: that the run asked for it (--upgrade, --upgrade-package), the
    requirement of the service's input the version does not fit, or else the resolver's own
    reason the version cannot stand beside the rest of the new lock (`explain`)."""
    source = lock_file(service, "in")
    why = {}
    for name, was in moved.items():
        unfit = teampins.unfit(name, was, requirements, repo.target)
        if upgrade:
            why[name] = "--upgrade takes the newest version the requirements allow, not the team's pins"
        elif name in upgrade_names:
            why[name] = f"--upgrade-package {upgrade_names[name]}"
        elif unfit is not None:
            why[name] = f"{was} does not fit {unfit}, which {source} requires"
        else:
            reason = explain(service, name, was)
            why[name] = (
                f"{was} fits what {source} requires, but not the rest of the lock: {reason}"
                if reason
                else f"{was} fits what {source} requires and the rest of the lock, and the resolver took another version"
            )
    return why


def _sdist_only(repo: Repository, work: Path, services: list[str]) -> list[tuple[Pin, Path]]:
    """The service pins the index publishes no wheel of for a target (any of them), each with
    its sdist (downloaded hash-checked into `work`), so that their build requirements can be locked."""
    pins: dict[tuple[str, str], Pin] = {}
    for name in services:
        label = lock_file(name)
        for pin in parse_pins(work / label, label).values():
            pins.setdefault((pin.name, pin.version), pin)
    found: dict[tuple[str, str], tuple[Pin, Path]] = {}
    for target in repo.targets:
        for choice in index.plan(list(pins.values()), repo.indexes, target):
            key = (choice.pin.name, choice.pin.version)
            if choice.builds_from_sdist and key not in found:
                report.info(f"{choice.pin.requirement_line()}: the index has no wheel for {target.describe()}; locking its build requirements")
                sdist = index.download(choice.file, choice.pin.hashes, work / "sdists", f"{choice.pin.source}: {choice.pin.requirement_line()}")
                found[key] = (choice.pin, sdist)
    return list(found.values())


def _fitting_upgrades(upgrade_packages: tuple[str, ...], sdist_input: Path) -> tuple[str, ...]:
    """The --upgrade-package entries an sdist's build lock takes: `NAME==VERSION` only where
    what the sdist requires of NAME admits VERSION. Moving setuptools to today's for the
    first-party backends must not ask an old sdist's lock for what its setup.py cannot use."""
    required: dict[str, list[Requirement]] = {}
    for line in sdist_input.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            required.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    fitting = []
    for spec in upgrade_packages:
        wanted = Requirement(spec)  # checked by _check_upgrade_packages
        versions = [s.version for s in wanted.specifier if s.operator == "=="]
        admitted = all(r.specifier.contains(v, prereleases=True) for v in versions for r in required.get(canonicalize_name(wanted.name), []))
        if admitted:
            fitting.append(spec)
    return tuple(fitting)


# The first line of every file `invoke lock` writes into requirements/ (a lock, or a
# service's generated .in): a file without it is the team's own and is never touched.
_GENERATED = "# Generated by `invoke lock`"


def _orphans(repo: Repository) -> dict[str, str]:
    """requirements/<name>.in and .txt that `invoke lock` generated for a service the
    repository no longer has (its directory deleted or renamed), each with that name."""
    wanted = {*repo.services, TOOLING, BUILD}
    found = {}
    for path in sorted((repo.root / REQUIREMENTS_DIR).glob("*.in")) + sorted((repo.root / REQUIREMENTS_DIR).glob("*.txt")):
        if path.stem not in wanted and _is_generated(path):
            found[f"{REQUIREMENTS_DIR}/{path.name}"] = path.stem
    return found


def _existing_sdist_locks(root: Path) -> list[str]:
    """The sdist build locks (and their inputs) the repository has now."""
    found = sorted((root / SDIST_LOCKS_DIR).glob("*.in")) + sorted((root / SDIST_LOCKS_DIR).glob("*.txt"))
    return [f"{SDIST_LOCKS_DIR}/{path.name}" for path in found]


def lock(  # noqa: C901 - one pass over one temporary copy of requirements/: build lock, reload, service locks, tooling lock, then the comparison or the switch; its steps share that copy and its state
    repo: Repository,
    *,
    service: str | None = None,
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    check: bool = False,
    resolver: str | None = None,
) -> list[str]:
    """Compile (or, with check, verify) the locks; return the repository-relative files changed.

    `resolver` overrides the repository's `[tool.wheelpipe.lock] resolver` (uv by default).
    """
    chosen = resolvers.resolver(resolver, "--resolver") if resolver else resolvers.resolver(repo.resolver, "pyproject.toml: [tool.wheelpipe.lock] resolver")
    chosen.prepare(repo.targets)
    if service is not None:
        # An unknown --service is refused before anything is resolved, when the names are
        # known: with a stale build lock some are only known once the build lock is made below.
        with contextlib.suppress(StaleBuildLockError):
            repo.select_services(service)
    committed = repo.root / REQUIREMENTS_DIR
    dev_in = repo.root / lock_file(TOOLING, "in")
    starts_tooling_input = not dev_in.is_file()
    tooling_input = default_tooling_input().encode() if starts_tooling_input else dev_in.read_bytes()

    with tempfile.TemporaryDirectory(prefix="wheelpipe-lock-") as tmp:
        work = Path(tmp)
        (work / REQUIREMENTS_DIR).mkdir()
        # The current locks seed the resolution, so only what the inputs force (or an
        # upgrade asks for) moves; their hashes are never reused (--no-reuse-hashes). Those of
        # a service that is gone seed nothing: they are removed (below, once the services are
        # known: with a stale build lock they are only known after it is made).
        for current_lock in _generated_locks(committed):
            shutil.copy2(current_lock, work / REQUIREMENTS_DIR / current_lock.name)
        (work / REQUIREMENTS_DIR / dev_in.name).write_bytes(tooling_input)

        options = resolvers.Options(repo.targets, repo.indexes, upgrade, upgrade_packages)

        keeping = resolvers.Options(repo.targets, repo.indexes)

        def compile_lock(output: str, sources: list[str], constraints: Sequence[str] = (), with_options: resolvers.Options = options) -> None:
            chosen.compile(resolvers.Job(work, output, tuple(sources), tuple(constraints)), with_options)

        # The build lock: every first-party backend, pinned and hashed. A package whose
        # metadata only its backend gives is read through this lock, so it is locked first.
        build_in, build_txt = lock_file(BUILD, "in"), lock_file(BUILD, "txt")
        if repo.backend_described:
            report.step(f"locking the build backends first: {', '.join(repo.backend_described)} get their metadata from theirs")
        if repo.build_systems:
            (work / build_in).write_text(environment.lock_input(repo.build_systems))
            compile_lock(build_txt, [build_in])
        else:
            (work / build_txt).unlink(missing_ok=True)
        if repo.backend_described:
            repo = load_repository(repo.root, build_lock=work / build_txt)

        orphans = _orphans(repo)
        for label in orphans:
            (work / label).unlink(missing_ok=True)
        everything = list(repo.services)
        asked = repo.select_services(service)
        # A service with no lock yet gets its first one (from its team's pins) whichever
        # service was asked for: the tooling lock is layered on every service's lock.
        first_locks = [n for n in everything if n not in asked and not (work / lock_file(n)).exists()]
        selected = [n for n in everything if n in asked or n in first_locks]
        report.step(("checking" if check else "compiling") + f" locks for {', '.join(selected)} and the tooling ({chosen.name}, for {' and '.join(t.describe() for t in repo.targets)})")
        if first_locks:
            report.info(f"{', '.join(lock_file(n) for n in first_locks)}: no lock yet; locking it too, keeping the team's pins")
        for name in everything:
            (work / REQUIREMENTS_DIR / f"{name}.in").write_text(repo.lock_input(name))
        upgrade_names = _upgrade_names(upgrade_packages)
        known = _pinned_names(work, REQUIREMENTS_DIR)

        # A service's first lock starts from the team's existing pins, if it has any.
        first_party = set(repo.packages)
        adopted = {}
        for name in selected:
            existing = teampins.find(repo, name) if not (work / lock_file(name, "txt")).exists() else None
            if existing:
                (work / lock_file(name, "txt")).write_text(existing.seed(first_party))
                adopted[name] = existing

        # Service locks are independent of each other: resolve them side by side. The
        # upgrades apply to the services asked for; a first lock of another keeps its team's pins.
        parallel(lambda n: compile_lock(lock_file(n), [lock_file(n, "in")], with_options=options if n in asked else keeping), selected, os.cpu_count() or 1)
        service_locks = {n: parse_pins(work / lock_file(n), lock_file(n)) for n in everything}

        def explain(name: str, package: str, was: str) -> str | None:
            """The resolver's reason `package==was` cannot stand beside the rest of the service's new lock."""
            why = f"why/{name}/{package}"
            (work / why).mkdir(parents=True)
            (work / why / "wanted.in").write_text(f"{package}=={was}\n")
            (work / why / "rest.txt").write_text(_pins_text(p for p in service_locks[name].values() if p.name != package))
            job = resolvers.Job(work, f"{why}/lock.txt", (lock_file(name, "in"), f"{why}/wanted.in"), (f"{why}/rest.txt",))
            try:
                with quiet():
                    chosen.compile(job, keeping)
            except ResolutionError as error:
                return error.reason
            return None

        for name, existing in adopted.items():
            resolved = {n: pin.version for n, pin in service_locks[name].items()}
            requirements = [Requirement(line) for line in repo.third_party_requirements(name)]
            upgraded = name in asked and upgrade
            why = _why_moved(explain, name, teampins.moved(existing, resolved), requirements, repo, upgraded, upgrade_names if name in asked else {})
            for line in teampins.report(existing, resolved, why):
                report.info(f"{lock_file(name, 'txt')}: {line}")

        divergent = divergences(service_locks)
        if repo.one_version and divergent:
            raise LockError(_one_version_refusal(divergent))
        for divergence in divergent:
            report.info(f"{divergence.name}: the services pin different versions (each installs its own): {divergence.describe()}")
        # The tooling follows the services where they agree; where they differ it cannot
        # follow all of them, and it need not: each service's tests run in its own environment.
        tooling_work = _tooling_workdir(work, everything, service_locks, divergent) if divergent else work
        if divergent:
            report.info(f"{lock_file(TOOLING)}: constrained by the service locks except on {', '.join(d.name for d in divergent)}")
        # An --upgrade-package X==V moves the service locks; the tooling follows them through the
        # constraints where they agree, and elsewhere takes what its own requirements allow of X.
        tooling_options = resolvers.Options(repo.targets, repo.indexes, upgrade, tuple(upgrade_names))
        sources = [lock_file(TOOLING, "in"), *(lock_file(n, "in") for n in everything)]
        chosen.compile(resolvers.Job(tooling_work, lock_file(TOOLING), tuple(sources), tuple(lock_file(n) for n in everything)), tooling_options)
        if tooling_work != work:
            shutil.copy2(tooling_work / lock_file(TOOLING), work / lock_file(TOOLING))
        produced = [lock_file(TOOLING, "in")] if starts_tooling_input else []
        produced += [lock_file(n, "in") for n in everything] + [lock_file(n, "txt") for n in selected] + [lock_file(TOOLING, "txt")]

        produced += [build_in, build_txt]

        # Each sdist-only dependency's own build lock, from its own [build-system] requires,
        # seeded by the current one: an old sdist builds with the tools it names.
        (work / SDIST_LOCKS_DIR).mkdir()
        needed = []
        for pin, sdist in _sdist_only(repo, work, everything):
            sdist_in, sdist_txt = sdist_lock_file(pin.name, pin.version, "in"), sdist_lock_file(pin.name, pin.version)
            (work / sdist_in).write_text(sdists.sdist_lock_input(pin, sdist))
            if (repo.root / sdist_txt).is_file():
                shutil.copy2(repo.root / sdist_txt, work / sdist_txt)
            upgrades = _fitting_upgrades(upgrade_packages, work / sdist_in)
            compile_lock(sdist_txt, [sdist_in], with_options=resolvers.Options(repo.targets, repo.indexes, upgrade, upgrades))
            needed += [sdist_in, sdist_txt]
        # Those of pins no longer built from an sdist are removed.
        produced += sorted(set(needed) | set(_existing_sdist_locks(repo.root)))

        produced += list(orphans)

        outputs = [label for label in produced if (work / label).exists()]
        for label in outputs:
            _check_portable(work / label, label)
        _check_upgrade_packages(repo, upgrade_names, known | _pinned_names(work, REQUIREMENTS_DIR) | _pinned_names(work, SDIST_LOCKS_DIR))

        changed = {
            label: _diff(repo.root / label, work / label, label)
            for label in produced
            if (work / label).exists() != (repo.root / label).exists()
            or ((work / label).exists() and (repo.root / label).read_bytes() != (work / label).read_bytes())
        }
        for label, name in orphans.items():
            changed[label] = [f"- {label} ({_orphaned([name])})"]
        line_ends = [label for label, diff in changed.items() if diff == [_CRLF_ONLY]]
        if check:
            if changed and len(line_ends) == len(changed):
                raise LockError(f"{', '.join(line_ends)}: {_CRLF_ONLY}; {_CRLF_FIX}")
            if changed and set(orphans) == set(changed):
                msg = f"{', '.join(orphans)}: {_orphaned(sorted(set(orphans.values())))}; run `invoke lock` to remove them"
                raise LockError(msg)
            if changed:
                raise StaleLockError(changed)
            report.info("every lock matches its inputs")
            return []
        for label in changed:
            if (work / label).exists():
                write_atomic(repo.root / label, (work / label).read_bytes())
                report.info(f"wrote {label}" + (" with LF line ends (it had CRLF)" if label in line_ends else ""))
            else:
                (repo.root / label).unlink()
                report.info(f"removed {label} ({_orphaned([orphans[label]]) if label in orphans else 'no longer needed'})")
        sdist_locks = repo.root / SDIST_LOCKS_DIR
        if sdist_locks.is_dir() and not any(sdist_locks.iterdir()):
            sdist_locks.rmdir()
        if not changed:
            report.info("locks already up to date")
        return list(changed)
