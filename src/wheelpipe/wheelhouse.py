"""`invoke build-wheels`: the verified wheelhouse and its install manifests.

Layout: `wheelhouse` is a symlink to one complete generation under `.wheelhouse/`.
A run builds the next generation beside it (hard-linking what did not change) and
switches the symlink in one rename, so a failed, interrupted or killed run leaves the
previous wheelhouse whole; an exclusive lock serializes concurrent runs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from packaging.utils import parse_wheel_filename

from . import firstparty, thirdparty
from .console import Reporter
from .errors import LockError, WheelhouseError
from .fsutil import exclusive_lock, fsync_tree, sha256_file, write_atomic
from .lockfile import Pin, format_pins, parse_pins
from .locks import DEV, input_text
from .model import REQUIREMENTS_DIR, Package, Repository

WHEELHOUSE = "wheelhouse"
STORE = ".wheelhouse"
MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
INSTALL_DIR = "install"
# pip itself, pinned by the tooling lock, runs from its wheel in image builder stages
# so that no pip ever lands in a runtime image.
INSTALLER = "pip"
FORMAT = 1


@dataclass
class Entry:
    """One wheel in the wheelhouse and where it came from."""

    name: str
    version: str
    file: str
    sha256: str
    origin: dict
    services: list[str] = field(default_factory=list)


@dataclass
class Wheelhouse:
    """A complete, verified generation of the wheelhouse."""

    path: Path
    entries: dict[str, Entry]  # by file name

    def install_manifest(self, service: str) -> Path:
        return self.path / INSTALL_DIR / f"{service}.txt"

    def for_service(self, service: str) -> list[Entry]:
        return [e for e in self.entries.values() if service in e.services]

    def installer(self) -> Entry:
        found = [e for e in self.entries.values() if e.origin.get("purpose") == "installer"]
        if not found:
            msg = f"{WHEELHOUSE}/{MANIFEST}: no installer ({INSTALLER}) wheel; run `invoke build-wheels`"
            raise WheelhouseError(msg)
        return found[0]


@dataclass
class Result:
    wheelhouse: Wheelhouse
    built: list[str]
    downloaded: list[str]


def open_wheelhouse(root: Path) -> Wheelhouse:
    """The current wheelhouse, every wheel checked against its recorded sha256."""
    link = root / WHEELHOUSE
    if not link.exists():
        msg = f"{WHEELHOUSE}/: missing; run `invoke build-wheels`"
        raise WheelhouseError(msg)
    return verify(link.resolve())


def verify(directory: Path) -> Wheelhouse:
    manifest_path = directory / MANIFEST
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        msg = f"{WHEELHOUSE}/{MANIFEST}: unreadable ({error}); rebuild with `invoke build-wheels --clean`"
        raise WheelhouseError(msg) from None
    if data.get("format") != FORMAT:
        msg = f"{WHEELHOUSE}/{MANIFEST}: format {data.get('format')!r}, expected {FORMAT}; rebuild with `invoke build-wheels --clean`"
        raise WheelhouseError(msg)
    entries = {item["file"]: Entry(**item) for item in data["wheels"]}
    for entry in entries.values():
        wheel = directory / entry.file
        if not wheel.is_file():
            msg = f"{WHEELHOUSE}/{entry.file}: missing from the wheelhouse (expected sha256 {entry.sha256}); rebuild with `invoke build-wheels --clean`"
            raise WheelhouseError(msg)
        actual = sha256_file(wheel)
        if actual != entry.sha256:
            msg = f"{WHEELHOUSE}/{entry.file}: sha256 mismatch: expected {entry.sha256}, found {actual}; rebuild with `invoke build-wheels --clean`"
            raise WheelhouseError(msg)
    by_hash = {e.sha256: e for e in entries.values()}
    for manifest in sorted((directory / INSTALL_DIR).glob("*.txt")):
        label = f"{WHEELHOUSE}/{INSTALL_DIR}/{manifest.name}"
        for pin in parse_pins(manifest, label).values():
            (digest,) = pin.hashes
            if digest not in by_hash:
                msg = f"{label}:{pin.line}: {pin.requirement_line()} pins sha256 {digest}, which no wheel in the wheelhouse has"
                raise WheelhouseError(msg)
    return Wheelhouse(directory, entries)


def load_lock(repo: Repository, service: str) -> dict[str, Pin]:
    """A service's lock, refused when its generated input no longer matches the pyproject files."""
    lock = repo.lock_path(service)
    label = repo.relative(lock)
    if not lock.is_file():
        msg = f"{label}: missing; run `invoke lock` to create the lock for service {service!r}"
        raise LockError(msg)
    source = lock.with_suffix(".in")
    if not source.is_file() or source.read_text() != input_text(repo, service):
        msg = f"{repo.relative(source)} does not match the pyproject.toml files of service {service!r}; run `invoke lock`"
        raise LockError(msg)
    return parse_pins(lock, label)


@dataclass
class _Plan:
    reuse: dict[str, Entry] = field(default_factory=dict)  # new entries taken as they are
    build: list[tuple[Package, dict]] = field(default_factory=list)
    fetch: list[Pin] = field(default_factory=list)
    # service -> wheel files, or "build:NAME" / "fetch:NAME==VERSION" for wheels still to make
    installs: dict[str, set[str]] = field(default_factory=dict)
    installer_key: str = ""


def _plan(repo: Repository, selected: list[str], locks: dict[str, dict[str, Pin]], installer: Pin, old_entries: list[Entry]) -> _Plan:
    """What to reuse from the current wheelhouse, build and download, and who needs what."""
    plan = _Plan()
    backend = firstparty.backend_version()
    first_party_keys = {}
    for package in {p.name: p for name in selected for p in repo.closure(name)}.values():
        origin = _first_party_origin(repo, package, backend)
        found = next((e for e in old_entries if e.origin == origin and e.name == package.name and e.version == package.version), None)
        if found:
            plan.reuse[found.file] = found
            first_party_keys[package.name] = found.file
        else:
            plan.build.append((package, origin))
            first_party_keys[package.name] = f"build:{package.name}"
    pins = {(pin.name, pin.version): pin for lock in locks.values() for pin in lock.values()}
    pins[(installer.name, installer.version)] = installer
    third_party_keys = {}
    for key, pin in pins.items():
        found = next((e for e in old_entries if _third_party_matches(e, pin)), None)
        if found:
            plan.reuse[found.file] = found
            third_party_keys[key] = found.file
        else:
            plan.fetch.append(pin)
            third_party_keys[key] = f"fetch:{pin.name}=={pin.version}"
    for name in selected:
        plan.installs[name] = {first_party_keys[p.name] for p in repo.closure(name)}
        plan.installs[name] |= {third_party_keys[(p.name, p.version)] for p in locks[name].values()}
    # Services not selected keep their part of the wheelhouse as it is.
    for entry in old_entries:
        for name in entry.services:
            if name in repo.services and name not in selected:
                plan.installs.setdefault(name, set()).add(entry.file)
                plan.reuse[entry.file] = entry
    plan.installer_key = third_party_keys[(installer.name, installer.version)]
    return plan


def _first_party_origin(repo: Repository, package: Package, backend: str) -> dict:
    return {
        "kind": "built",
        "source": package.directory,
        "source_sha256": firstparty.source_fingerprint(package),
        "build_backend": f"{firstparty.BUILD_BACKEND}=={backend}",
        "source_date_epoch": firstparty.source_date_epoch(repo.root, package),
    }


def _third_party_matches(entry: Entry, pin: Pin) -> bool:
    locked = entry.origin.get("locked_hash", "").removeprefix("sha256:")
    return entry.name == pin.name and entry.version == pin.version and locked in pin.hashes


def build_wheels(
    repo: Repository,
    *,
    service: str | None = None,
    clean: bool = False,
    pip_args: tuple[str, ...] = (),
    reporter: Reporter,
) -> Result:
    selected = repo.select_services(service)
    locks = {name: load_lock(repo, name) for name in selected}
    dev_lock = repo.root / REQUIREMENTS_DIR / f"{DEV}.txt"
    installer = parse_pins(dev_lock, repo.relative(dev_lock)).get(INSTALLER) if dev_lock.is_file() else None
    if installer is None:
        msg = f"{REQUIREMENTS_DIR}/{DEV}.txt: expected a hashed pin of {INSTALLER} (the image installer); run `invoke lock`"
        raise LockError(msg)
    store = repo.root / STORE
    reporter.step(f"building the wheelhouse for {', '.join(selected)} ({repo.target.describe()})")

    def waiting() -> None:
        reporter.info("another build-wheels run holds the wheelhouse; waiting for it to finish")

    with exclusive_lock(store / ".lock", waiting):
        _remove_leftovers(repo.root, store)
        link = repo.root / WHEELHOUSE
        if link.exists() and not link.is_symlink():
            msg = f"{WHEELHOUSE}/ is a plain directory, not a wheelhouse made by `invoke build-wheels`; move it away"
            raise WheelhouseError(msg)
        old = verify(link.resolve()) if link.exists() and not clean else None
        old_entries = list(old.entries.values()) if old else []

        plan = _plan(repo, selected, locks, installer, old_entries)
        installs, installer_key = plan.installs, plan.installer_key

        if old and not plan.build and not plan.fetch:
            entries = _compose(plan.reuse, installs, installer_key)
            if _manifest_json(repo, entries) == (old.path / MANIFEST).read_text():
                reporter.info("wheelhouse is up to date: nothing to build, nothing to download")
                return Result(old, [], [])

        token = secrets.token_hex(4)
        partial = store / f"partial-{token}"
        partial.mkdir(parents=True)
        for entry in plan.reuse.values():
            os.link(old.path / entry.file, partial / entry.file)
        built = _build_first_party(plan.build, partial, reporter)
        fetched = _fetch_third_party(repo, plan.fetch, partial, pip_args, reporter)
        new = dict(plan.reuse)
        resolved = {}
        for key, entry in [*built, *fetched]:
            new[entry.file] = entry
            resolved[key] = entry.file
        installs = {name: {resolved.get(k, k) for k in keys} for name, keys in installs.items()}
        entries = _compose(new, installs, resolved.get(installer_key, installer_key))
        _write_metadata(repo, partial, entries, installs)
        fsync_tree(partial)
        generation = store / f"gen-{token}"
        partial.rename(generation)
        _switch(link, generation)
        _prune(store, keep={generation.name, old.path.name if old else ""})
        result = Result(verify(generation), [e.file for _, e in built], [e.file for _, e in fetched])
        reporter.info(f"wheelhouse ready: built {len(result.built)}, downloaded {len(result.downloaded)}, {len(entries)} wheels in {WHEELHOUSE}/")
        return result


def _build_first_party(jobs: list[tuple[Package, dict]], partial: Path, reporter: Reporter) -> list[tuple[str, Entry]]:
    def one(job: tuple[Package, dict]) -> tuple[str, Entry]:
        package, origin = job
        reporter.info(f"building {package.label} {package.version}")
        with tempfile.TemporaryDirectory(prefix="wheelpipe-build-") as tmp:
            wheel = firstparty.build_wheel(package, origin["source_date_epoch"], Path(tmp), reporter)
            name, version, _, _ = parse_wheel_filename(wheel.name)
            if name != package.name or str(version) != package.version:
                msg = f"{package.label}: the build produced {wheel.name}, expected {package.name} {package.version}"
                raise WheelhouseError(msg)
            final = partial / wheel.name
            shutil.move(wheel, final)
        return f"build:{package.name}", Entry(package.name, package.version, final.name, sha256_file(final), origin)

    # Two workers: the backends spend most of their time starting up, not computing.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, jobs))


def _fetch_third_party(repo: Repository, pins: list[Pin], partial: Path, pip_args: tuple[str, ...], reporter: Reporter) -> list[tuple[str, Entry]]:
    if not pins:
        return []
    with tempfile.TemporaryDirectory(prefix="wheelpipe-fetch-", dir=partial.parent) as tmp:
        results = []
        for item in thirdparty.fetch(pins, Path(tmp), repo.target, pip_args, reporter):
            final = partial / item.wheel.name
            item.wheel.rename(final)
            origin = {"kind": "downloaded", "locked_hash": f"sha256:{sha256_file(final)}"}
            if item.sdist:
                origin = {"kind": "built-from-sdist", "sdist": item.sdist.name, "locked_hash": f"sha256:{sha256_file(item.sdist)}"}
            entry = Entry(item.pin.name, item.pin.version, final.name, sha256_file(final), origin)
            results.append((f"fetch:{item.pin.name}=={item.pin.version}", entry))
        return results


def _compose(entries: dict[str, Entry], installs: dict[str, set[str]], installer_file: str) -> list[Entry]:
    """Final entries: who uses each wheel and which lock pinned it, derived, never stored twice."""
    composed = []
    for file, entry in sorted(entries.items()):
        services = sorted(name for name, files in installs.items() if file in files)
        origin = {k: v for k, v in entry.origin.items() if k not in ("locks", "purpose")}
        if origin["kind"] != "built":
            origin["locks"] = [f"{REQUIREMENTS_DIR}/{name}.txt" for name in services]
        if file == installer_file:
            origin["purpose"] = "installer"
            origin.setdefault("locks", []).append(f"{REQUIREMENTS_DIR}/{DEV}.txt")
        if services or file == installer_file:
            composed.append(Entry(entry.name, entry.version, file, entry.sha256, origin, services))
    return composed


def _manifest_json(repo: Repository, entries: list[Entry]) -> str:
    document = {
        "format": FORMAT,
        "target": asdict(repo.target),
        "services": sorted({s for e in entries for s in e.services}),
        "wheels": [asdict(e) for e in entries],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _install_header(service: str) -> str:
    return (
        f"Install manifest of the {service} service: every distribution it needs, pinned to the\n"
        "exact wheel file in this wheelhouse. Generated by `invoke build-wheels`; do not edit.\n"
        f"pip install --no-index --find-links wheelhouse --require-hashes --only-binary :all: -r wheelhouse/install/{service}.txt\n"
    )


def _write_metadata(repo: Repository, directory: Path, entries: list[Entry], installs: dict[str, set[str]]) -> None:
    for service, files in installs.items():
        chosen = [(e.name, e.version, e.sha256) for e in entries if e.file in files]
        write_atomic(directory / INSTALL_DIR / f"{service}.txt", format_pins(chosen, _install_header(service)))
    write_atomic(directory / MANIFEST, _manifest_json(repo, entries))
    listed = sorted([e.file for e in entries] + [f"{INSTALL_DIR}/{s}.txt" for s in installs] + [MANIFEST])
    sums = "".join(f"{sha256_file(directory / name)}  {name}\n" for name in listed)
    write_atomic(directory / CHECKSUMS, sums)


def _switch(link: Path, generation: Path) -> None:
    """Point the wheelhouse symlink at the new generation in one rename."""
    tmp = link.with_name(f".{link.name}.{generation.name}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(generation.relative_to(link.parent))
    os.replace(tmp, link)


def _remove_leftovers(root: Path, store: Path) -> None:
    """Partial generations of killed runs never become visible; remove them."""
    for path in store.glob("partial-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in store.glob("wheelpipe-fetch-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(f".{WHEELHOUSE}.gen-*"):
        path.unlink(missing_ok=True)


def _prune(store: Path, keep: set[str]) -> None:
    # The previous generation stays: a reader that resolved the old symlink may still use it.
    for path in store.glob("gen-*"):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
