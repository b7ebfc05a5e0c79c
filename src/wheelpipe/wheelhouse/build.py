"""`invoke build-wheels`: a new generation from the plan, verified, then switched in."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from .. import thirdparty
from ..build import compiled, firstparty, metadata, sdists
from ..console import parallel, report
from ..errors import ToolError, WheelhouseError
from ..fsutil import fsync_tree, sha256_file, write_atomic
from ..lockfile import Pin
from ..model import Package, Repository
from ..target import Target, described
from .manifest import (
    _REBUILD,
    MANIFEST,
    STORE,
    WHEELHOUSE,
    BuiltOrigin,
    DownloadedOrigin,
    Entry,
    SdistOrigin,
    ThirdPartyOrigin,
    Wheelhouse,
    _compose,
    _installed,
    _render_files,
    _tag_list,
)
from .plan import Kept, Plan, ToBuild, ToFetch, _file_of, _first_party_origin, _resolve_installs, make_plan
from .store import _prune, _record_trust, _remove_leftovers, _strays, _switch_or_undo, _trusted, held
from .verify import Result, _load, _locked_pins, _users, check_intact, check_locked


def _check_by_rebuild(repo: Repository, plans: list[Plan], selected: list[str], source: firstparty.FileSource) -> None:
    """Every first-party and sdist-built wheel the plans reuse, built again for its target and
    compared (a pure one once, for the first target that reuses it)."""
    done: set[str] = set()
    for plan in plans:
        _check_target_by_rebuild(repo, plan, selected, source, done)


def _check_target_by_rebuild(repo: Repository, plan: Plan, selected: list[str], source: firstparty.FileSource, done: set[str]) -> None:
    """Every first-party and sdist-built wheel the plan reuses, built again and compared byte
    for byte: they are reproducible, so one that differs is not what its recorded inputs build
    (manifest.json records only what the wheel was made of, and anyone who can write the
    wheelhouse can write both). Downloaded wheels need no rebuild: their locks pin their hashes."""
    first_party: list[tuple[Package, BuiltOrigin]] = []
    sdist_built: list[Pin] = []
    kept = {e.file: e for e in plan.reuse.values() if e.file not in done}
    done |= set(kept)
    pins = _locked_pins(repo)
    for file, entry in sorted(kept.items()):
        if isinstance(entry.origin, BuiltOrigin):
            package = repo.packages.get(entry.name)
            origin = _first_party_origin(package, metadata.backend_of(repo, package), source) if package else None
            if package is None or origin != entry.origin:
                users = _other_users(plan, selected, file) or entry.services
                msg = (
                    f"{WHEELHOUSE}/{file}: kept for service {', '.join(users)}, but its sources changed since it was built, so it cannot be "
                    f"checked against a build of them, and this wheelhouse is not one build-wheels wrote here; run `invoke build-wheels` without --service"
                )
                raise WheelhouseError(msg)
            first_party.append((package, origin))
        elif isinstance(entry.origin, SdistOrigin):
            locking = pins[(canonicalize_name(entry.name), entry.version)]  # check_locked saw it pinned
            sdist_built.append(replace(locking[0], hashes=frozenset().union(*(p.hashes for p in locking))))
    if not first_party and not sdist_built:
        return
    report.info(f"checking {len(first_party) + len(sdist_built)} wheel(s) the wheelhouse holds against a build of their recorded sources")
    held_by = {(e.name, e.version): e for e in kept.values()}
    with tempfile.TemporaryDirectory(prefix="wheelpipe-check-", dir=repo.root / STORE) as tmp:
        rebuilt = [e for _, e in _build_first_party(repo, plan.target, first_party, Path(tmp), source, "checking")]
        rebuilt += [e for _, e in _fetch_third_party(repo, plan.target, sdist_built, Path(tmp))]
        for made in rebuilt:
            held = held_by[(made.name, made.version)]
            if made.file != held.file or made.sha256 != held.sha256:
                what = f"{repo.packages[made.name].label} from {source.describe()}" if isinstance(held.origin, BuiltOrigin) else f"{held.name}=={held.version} from its locked sdist"
                msg = (
                    f"{WHEELHOUSE}/{held.file}: sha256 {held.sha256}, but building {what}, as {WHEELHOUSE}/{MANIFEST} records it was built, "
                    f"gives {made.file} with sha256 {made.sha256}: the wheel is not what its sources build; {_REBUILD}"
                )
                raise WheelhouseError(msg)


def build_wheels(  # noqa: C901 - the run's steps in order (load, check, plan, build, fetch, verify, switch) under one lock and one partial generation
    repo: Repository,
    *,
    service: str | None = None,
    clean: bool = False,
    source: firstparty.FileSource | None = None,
    check_rebuilds: bool = False,
) -> Result:
    """Refresh the wheelhouse; first-party wheels come from `source` (default: the working tree).
    A first-party or sdist-built wheel kept from the current wheelhouse is built again and
    compared when this clone did not write that wheelhouse, and always with `check_rebuilds`."""
    source = source or firstparty.WorkingTree(repo.root)
    selected = repo.select_services(service)
    locks = {name: repo.load_lock(name) for name in selected}
    installer = repo.installer_pin()
    store = repo.root / STORE
    targets = repo.targets
    report.step(f"building the wheelhouse for {', '.join(selected)} ({' and '.join(t.describe() for t in targets)})")

    with held(repo.root):
        _remove_leftovers(repo.root, store)
        link = repo.root / WHEELHOUSE
        if link.exists() and not link.is_symlink():
            msg = f"{WHEELHOUSE}/ is a plain directory, not a wheelhouse made by `invoke build-wheels`; move it away"
            raise WheelhouseError(msg)
        # A wheel no target runs, or one a lock no longer pins, is made anew below; a wheel or
        # derived file that is not what was written, or a third-party wheel whose hash no lock
        # pins, stops the run.
        previous = link.resolve() if link.exists() else None
        old = _load(previous) if previous and not clean else None
        if old is not None:
            check_intact(old)
            check_locked(repo, old.entries.values())
        old_entries = list(old.entries.values()) if old else []
        _refuse_keeping_off_target(repo, old, selected)

        # One plan per target, each against the current wheelhouse; below, each target's is
        # made again against what the targets before it made, so that a pure wheel is made once.
        plans = [make_plan(repo, target, selected, locks, installer, old_entries, source) for target in targets]
        checked = old is not None and (check_rebuilds or not _trusted(repo.root, old))
        if old is not None and checked:
            _check_by_rebuild(repo, plans, selected, source)

        if old and not any(plan.build or plan.fetch for plan in plans):
            installs_now, installers_now = _union(plans, {})
            entries = _compose(_reused(plans), installs_now, installers_now)
            # Up to date means every file it would write is there as it would write it, and
            # nothing else is.
            files = _render_files(targets, entries, _installed(targets, entries, installs_now))
            unchanged = all((old.path / name).is_file() and (old.path / name).read_bytes() == text.encode() for name, text in files.items())
            if unchanged and not _strays(old.path, set(files) | {e.file for e in entries}):
                if checked:
                    _record_trust(repo.root, old)
                report.info("wheelhouse is up to date: nothing to build, nothing to download")
                return Result(old, [], [])

        for line in _left_out(old) if old else []:
            report.info(line)
        token = secrets.token_hex(4)
        partial = store / f"partial-{token}"
        partial.mkdir(parents=True)
        try:
            made = _Made(partial)
            for target in targets:
                # Against what the current wheelhouse holds and what earlier targets made now.
                plan = make_plan(repo, target, selected, locks, installer, [*old_entries, *made.entries.values()], source)
                _make_for_target(repo, plan, made, old.path if old else None, selected, locks, source)
            entries = _compose(made.entries, made.installs, made.installers)
            _write_metadata(targets, partial, entries, made.installs)
            fsync_tree(partial)
            generation = store / f"gen-{token}"
            partial.rename(generation)
        except BaseException:
            # A failed or interrupted run leaves nothing behind, not even an invisible partial.
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _switch_or_undo(repo.root, link, generation)
        # The previous generation stays (--clean too): a reader that resolved the old symlink,
        # an image build or a release's archive, may still use it.
        _prune(store, keep={generation.name, previous.name if previous else ""})
        # Every entry's sha256 was taken in this run from the very file now in the generation
        # (reused ones by _load above, new ones as they were written): no second read.
        result = Result(Wheelhouse(generation, {e.file: e for e in entries}, targets), made.built, made.fetched)
        _record_trust(repo.root, result.wheelhouse)
        report.info(f"wheelhouse ready: built {len(result.built)}, downloaded {len(result.downloaded)}, {len(entries)} wheels in {WHEELHOUSE}/")
        return result


@dataclass
class _Made:
    """The next generation as a run makes it, target after target, in its partial directory."""

    partial: Path
    entries: dict[str, Entry] = field(default_factory=dict)  # by file: reused or made
    installs: dict[str, set[str]] = field(default_factory=dict)  # service -> its wheel files, on any target
    installers: set[str] = field(default_factory=set)  # the installer's wheel file of each target
    built: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)


def _make_for_target(  # noqa: PLR0913 - the plan, where it goes, and what it is checked against
    repo: Repository, plan: Plan, made: _Made, old_path: Path | None, selected: list[str], locks: dict[str, dict[str, Pin]], source: firstparty.FileSource,
) -> None:
    """Carry out one target's plan into the partial generation: link what it reuses from the
    current wheelhouse (what an earlier target made is there already), build and fetch the
    rest, and check each selected service's closure on the target from the very wheels."""
    target, partial = plan.target, made.partial
    for entry in plan.reuse.values():
        if old_path is not None and entry.file not in made.entries:
            os.link(old_path / entry.file, partial / entry.file)
    built = _build_first_party(repo, target, plan.build, partial, source)
    _refuse(partial, _off_target_build(repo, target, built))
    fetched = _fetch_third_party(repo, target, plan.fetch, partial)
    wheels_made: list[tuple[ToBuild | ToFetch, Entry]] = [*built, *fetched]
    _refuse(partial, _replacing_for_others(repo, plan, selected, wheels_made))
    made.entries |= plan.reuse
    files: dict[ToBuild | ToFetch, str] = {}
    for key, entry in wheels_made:
        made.entries[entry.file] = entry
        files[key] = entry.file
    installs, installer = _union([plan], files)
    for name, wheel_files in installs.items():
        made.installs.setdefault(name, set()).update(wheel_files)
    made.installers |= installer
    made.built += [e.file for _, e in built]
    made.fetched += [e.file for _, e in fetched]
    for name in selected:
        # Of each distribution the service installs, the wheel this target runs.
        chosen = [e for e in made.entries.values() if e.file in installs[name]]
        wheels = {e.name: partial / e.file for e in chosen if e.name in locks[name] and e.version == locks[name][e.name].version}
        own = {p.name for p in repo.closure(name)}
        built_here = {e.name: partial / e.file for e in chosen if e.name in own and isinstance(e.origin, BuiltOrigin)}
        thirdparty.check_closure(repo, target, name, locks[name], wheels, built_here)


def _union(plans: list[Plan], made: dict[ToBuild | ToFetch, str]) -> tuple[dict[str, set[str]], set[str]]:
    """Who installs which wheel file on any of the plans' targets, and the installer's wheel
    for each, once every wheel still to make is made (as `made` says)."""
    installs: dict[str, set[str]] = {}
    for plan in plans:
        for name, files in _resolve_installs(plan.installs, made).items():
            installs.setdefault(name, set()).update(files)
    return installs, {_file_of(plan.installer, made) for plan in plans}


def _reused(plans: list[Plan]) -> dict[str, Entry]:
    return {file: entry for plan in plans for file, entry in plan.reuse.items()}


def _build_first_party(
    repo: Repository, target: Target, jobs: list[tuple[Package, BuiltOrigin]], partial: Path, source: firstparty.FileSource, doing: str = "building",
) -> list[tuple[ToBuild, Entry]]:
    def one(job: tuple[Package, BuiltOrigin]) -> tuple[ToBuild, Entry]:
        package, origin = job
        report.info(f"{doing} {package.label} {package.version} from {source.describe()} with {origin.build_backend}")
        with tempfile.TemporaryDirectory(prefix="wheelpipe-build-") as tmp:
            python = metadata.python_for(repo, package)
            try:
                built = firstparty.build_wheel(package, source, origin.source_date_epoch, Path(tmp), python)
            except ToolError as error:
                raise metadata.explained(package, error) from None
            # The fingerprint of what was staged, should a file have changed since planning.
            origin = replace(origin, source_sha256=built.source_sha256)
            # Compiled code: built for the target's interpreter, checked and tagged for its platform.
            wheel = compiled.for_target(repo, target, package, source, built, origin.source_date_epoch, Path(tmp))
            name, version, _, _ = parse_wheel_filename(wheel.name)
            if name != package.name or str(version) != package.version:
                msg = f"{package.label}: the build produced {wheel.name}, expected {package.name} {package.version}"
                raise WheelhouseError(msg)
            final = partial / wheel.name
            shutil.move(wheel, final)
        return ToBuild(package.name), Entry(package.name, package.version, final.name, sha256_file(final), origin)

    # Two workers: the backends spend most of their time starting up, not computing.
    return parallel(one, jobs, 2)


def _fetch_third_party(repo: Repository, target: Target, pins: list[Pin], partial: Path) -> list[tuple[ToFetch, Entry]]:
    if not pins:
        return []
    with tempfile.TemporaryDirectory(prefix="wheelpipe-fetch-", dir=partial.parent) as tmp:
        results = []
        for item in thirdparty.fetch(pins, Path(tmp), repo.indexes, target, lambda pin: sdists.sdist_lock(repo.root, pin)):
            final = partial / item.wheel.name
            item.wheel.rename(final)
            origin: ThirdPartyOrigin = DownloadedOrigin(locked_hash=f"sha256:{sha256_file(final)}")
            if item.sdist and item.source_date_epoch is not None:  # thirdparty sets both, or neither
                assert item.build_lock is not None  # thirdparty builds no sdist without it
                origin = SdistOrigin(
                    sdist=item.sdist.name,
                    locked_hash=f"sha256:{sha256_file(item.sdist)}",
                    build_lock=item.build_lock.label,
                    build_environment=item.build_lock.digest,
                    source_date_epoch=item.source_date_epoch,
                )
            entry = Entry(item.pin.name, item.pin.version, final.name, sha256_file(final), origin)
            results.append((ToFetch(item.pin.name, item.pin.version), entry))
        return results






def _write_metadata(targets: tuple[Target, ...], directory: Path, entries: list[Entry], installs: dict[str, set[str]]) -> None:
    for name, text in _render_files(targets, entries, _installed(targets, entries, installs)).items():
        write_atomic(directory / name, text)


def _left_out(old: Wheelhouse) -> list[str]:
    """The current generation's stray files, one line each: the next generation carries none
    over. (Its derived files were checked intact before: a damaged one stops the run.)"""
    entries = list(old.entries.values())
    files = _render_files(old.targets, entries, _installed(old.targets, entries, _users(entries)))
    return [f"{WHEELHOUSE}/{stray}: not part of the wheelhouse; left out of the new generation" for stray in _strays(old.path, set(files) | set(old.entries))]


def _other_users(plan: Plan, selected: list[str], file: str) -> list[str]:
    return sorted(s for s, files in plan.installs.items() if s not in selected and Kept(file) in files)


def _refuse_keeping_off_target(repo: Repository, old: Wheelhouse | None, selected: list[str]) -> None:
    """--service keeps the other services' wheels as they are, which a wheel no target runs
    any more cannot be, nor a wheelhouse made for other targets: that takes a build of every service."""
    if old is None:
        return
    for file, entry in sorted(old.entries.items()):
        users = sorted(s for s in entry.services if s in repo.services and s not in selected)
        if users and not any(entry.runs_on(target) for target in repo.targets):
            msg = f"{WHEELHOUSE}/{file}: service {', '.join(users)} installs it, but its tags {_tag_list(entry.tags)} do not run on {described(repo.targets)}; run `invoke build-wheels` without --service to make every service's wheels for the target"
            raise WheelhouseError(msg)
    others = sorted(s for s in repo.services if s not in selected)
    if others and old.targets != repo.targets:
        msg = (
            f"{WHEELHOUSE}/{MANIFEST}: made for {described(old.targets)}, but pyproject.toml [tool.wheelpipe.target] now declares {described(repo.targets)}; "
            f"run `invoke build-wheels` without --service to make the wheels of service {', '.join(others)} too"
        )
        raise WheelhouseError(msg)


def _off_target_build(repo: Repository, target: Target, built: list[tuple[ToBuild, Entry]]) -> str | None:
    for key, entry in built:
        if not entry.runs_on(target):
            package = repo.packages[key.name]
            return f"{package.label}: the build produced {entry.file}, whose tags {_tag_list(entry.tags)} do not run on the target {target.describe()} (pyproject.toml [tool.wheelpipe.target])"
    return None


def _replacing_for_others(repo: Repository, plan: Plan, selected: list[str], made: list[tuple[ToBuild | ToFetch, Entry]]) -> str | None:
    """A wheel made for the selected services that has the file name, but not the bytes, of one
    another service installs: keeping both is impossible, and replacing it would change what
    that service installs."""
    for key, entry in made:
        kept = plan.reuse.get(entry.file)
        users = _other_users(plan, selected, entry.file)
        if kept is None or not users or kept.sha256 == entry.sha256:
            continue
        if isinstance(key, ToBuild):
            package = repo.packages[key.name]
            what, fix = package.label, f"bump the version in {package.directory}/pyproject.toml"
        else:
            what, fix = f"{key.name}=={key.version}", f"bump the version of {entry.name}"
        return (
            f"{what}: the new {entry.file} (sha256 {entry.sha256}) would replace the one service {', '.join(users)} "
            f"installs (sha256 {kept.sha256}); run `invoke build-wheels` without --service, or {fix}"
        )
    return None


def _refuse(partial: Path, message: str | None) -> None:
    """Stop before the next generation becomes visible, leaving nothing of it behind."""
    if message:
        shutil.rmtree(partial, ignore_errors=True)
        raise WheelhouseError(message)
