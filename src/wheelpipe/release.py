"""`invoke release`: a verified, reproducible wheelhouse archive another machine can install from.

A release is made of a commit: its first-party wheels are built from the committed files
(streamed from git), so nothing untracked or ignored ever ships. `--allow-dirty` builds
from the working tree instead and says so: the archive is named wheelhouse-<version>-dirty
and its manifest's commit ends in `-dirty`.

dist/wheelhouse-<version>.tar.gz holds, under wheelhouse-<version>/: every wheel, the
install manifests (derived again from the locks and the manifest, not copied), manifest.json
(with the release version and commit), a CycloneDX SBOM per service and SHA256SUMS over all
of it. Entries are sorted and owners, modes and times fixed (the commit time), so two
releases of one commit are byte-identical. Wheels are streamed into the archive, never held
in memory, and the archive appears under its name only once it is complete.

Provenance: a version is released once. An archive of the version already in dist/ made of
another commit, or of other bytes, is refused; the same commit again is the same bytes and
is left as it is. A tag the release is given (`--tag`, or CI's: GitHub Actions on a tag
push) must be `v<version>`, and a `v<version>` tag on HEAD must be this version's. A dirty
archive is a draft of the working tree, not a release: each --allow-dirty run replaces it.
dist/ must lie inside the repository, a symlink or not. The tag is checked, not recorded: the
archive is the commit's, the same whether or not a tag names it yet.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import posixpath
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from packaging.version import InvalidVersion, Version

from . import installcheck, manifests, wheelhouse
from . import publish as publishing
from .build import firstparty
from .chartrelease import ChartPackage, check_chart_unreleased, package_chart, push_chart
from .console import report
from .docker import Docker
from .errors import ReleaseError, ToolError
from .fsutil import HashingReader, atomic_output, sha256_file
from .locks import lock
from .manifests import DEPLOY_DIR
from .model import Repository
from .tools import git, run
from .wheelhouse import CHECKSUMS, MANIFEST, WHEELHOUSE, BuiltOrigin, Wheelhouse, build_wheels, install_path, per_target_path

DIST = "dist"
DIRTY = "-dirty"
TAG_PREFIX = "v"  # a release's tag is v<version>; .github/workflows/release.yml runs on v*
# The most of an existing archive's manifest.json read to learn its commit.
_MANIFEST_LIMIT = 64 << 20


@dataclass(frozen=True)
class ReleaseCommit:
    """What a release is made of: a commit, or (dirty) the working tree on top of it."""

    sha: str
    time: int  # the commit time: every time stamp in the archive
    dirty: bool

    @property
    def label(self) -> str:
        return self.sha + DIRTY if self.dirty else self.sha

    def source(self, root: Path) -> firstparty.FileSource:
        return firstparty.WorkingTree(root) if self.dirty else firstparty.Commit(root, self.sha)


def archive_name(repo: Repository, dirty: bool = False) -> str:
    return f"wheelhouse-{repo.release_version}{DIRTY if dirty else ''}"


def _git(repo: Repository, *args: str) -> str:
    # A file name in git's output may be any bytes (with core.quotePath off): never a traceback.
    result = git(repo.root, *args, check=False, errors="replace")
    if result.returncode != 0:
        msg = f"{repo.root.name}: a release needs a git commit (git {' '.join(args)}: {result.stderr.strip()})"
        raise ReleaseError(msg)
    return result.stdout.strip()


def commit_of(repo: Repository, allow_dirty: bool) -> ReleaseCommit:
    """The commit a release is made of. Changes to tracked files are refused without
    allow_dirty (the locks and pyproject files are read from the work tree); untracked files
    are not, since the wheels come from the commit. With allow_dirty, any difference from
    the commit, untracked files included, makes the release dirty."""
    sha = _git(repo, "rev-parse", "HEAD")
    stamp = int(_git(repo, "log", "-1", "--format=%ct"))
    if allow_dirty:
        return ReleaseCommit(sha, stamp, dirty=bool(_git(repo, "status", "--porcelain")))
    if _git(repo, "status", "--porcelain", "--untracked-files=no"):
        msg = "the work tree has uncommitted changes: a release is made of a commit (commit them, or pass --allow-dirty)"
        raise ReleaseError(msg)
    return ReleaseCommit(sha, stamp, dirty=False)


def dist_directory(repo: Repository) -> Path:
    """dist/, which must be a directory inside the repository: a symlink that leads out
    (to `/`, to another checkout) would have the release write there."""
    dist = repo.root / DIST
    if dist.is_symlink():
        root, resolved = repo.root.resolve(), dist.resolve()
        if not resolved.is_relative_to(root):
            msg = f"{DIST}: a symlink to {os.readlink(dist)!r}, outside the repository; a release writes only inside it: remove the link"
            raise ReleaseError(msg)
        if not resolved.exists():
            msg = f"{DIST}: a symlink to {os.readlink(dist)!r}, which does not exist; create that directory or remove the link"
            raise ReleaseError(msg)
    if os.path.lexists(dist) and not dist.is_dir():
        msg = f"{DIST}: exists and is not a directory; move it away"
        raise ReleaseError(msg)
    return dist


@dataclass(frozen=True)
class ReleaseTag:
    """A tag the release is said to be, and who said so (`--tag`, or a CI variable)."""

    name: str
    given_by: str


def ci_tags(environ: Mapping[str, str]) -> list[ReleaseTag]:
    """The tag a CI run was started for: GitHub Actions on a tag push sets GITHUB_REF_TYPE=tag
    with GITHUB_REF_NAME, and GITHUB_REF=refs/tags/<name>. Each is checked: they agree on
    GitHub, and one set by hand alone must still name the release."""
    tags = []
    if environ.get("GITHUB_REF_TYPE") == "tag":
        tags.append(ReleaseTag(environ.get("GITHUB_REF_NAME", ""), "GITHUB_REF_NAME"))
    ref = environ.get("GITHUB_REF", "")
    if ref.startswith("refs/tags/"):
        tags.append(ReleaseTag(ref.removeprefix("refs/tags/"), "GITHUB_REF"))
    return tags


def _is_release_tag(name: str) -> bool:
    """v<PEP 440 version>: what .github/workflows/release.yml is started for."""
    if not name.startswith(TAG_PREFIX):
        return False
    try:
        Version(name.removeprefix(TAG_PREFIX))
    except InvalidVersion:
        return False
    return True


def check_tags(repo: Repository, commit: ReleaseCommit, given: list[ReleaseTag]) -> None:
    """The tags that name this release name its version, and the commit it is made of.

    `given` (--tag, CI's) must each be exactly v<version> and, where the repository has that
    tag, name HEAD. HEAD's own release tags (v<version>), when it has any, must include this
    version's: HEAD tagged v9.9.9 alone is another release. A dirty release is not HEAD's,
    so HEAD's tags are not its own.
    """
    version = repo.release_version
    expected = f"{TAG_PREFIX}{version}"
    for tag in given:
        if tag.name != expected:
            msg = f"the release is tagged {tag.name!r} ({tag.given_by}), but [tool.wheelpipe.release] version in pyproject.toml is {version!r}: its tag is {expected!r}; tag the commit whose version it is, or change the version"
            raise ReleaseError(msg)
        tagged = git(repo.root, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag.name}^{{commit}}", check=False, errors="replace").stdout.strip()
        if tagged and tagged != commit.sha:
            msg = f"tag {tag.name!r} ({tag.given_by}) names commit {tagged[:12]}, but HEAD is {commit.sha[:12]}: a release is made of the commit its tag names; check out {tag.name}"
            raise ReleaseError(msg)
    if commit.dirty:
        return
    on_head = sorted(name for name in _git(repo, "tag", "--points-at", "HEAD").splitlines() if _is_release_tag(name))
    if on_head and expected not in on_head:
        msg = f"HEAD ({commit.sha[:12]}) is tagged {', '.join(on_head)}, but [tool.wheelpipe.release] version in pyproject.toml is {version!r}, whose tag is {expected!r}; release the commit its version names, or change the version"
        raise ReleaseError(msg)


@dataclass(frozen=True)
class Existing:
    """A clean archive of this version already in dist/, made of this very commit."""

    path: Path
    sha256: str


def recorded_commit(archive: Path, prefix: str) -> str:
    """The commit an archive's manifest.json records (release.commit), or why it has none."""
    try:
        with tarfile.open(archive, mode="r:gz") as bundle:
            for member in bundle:
                if member.name == f"{prefix}/{MANIFEST}" and member.isfile() and member.size <= _MANIFEST_LIMIT:
                    stream = bundle.extractfile(member)
                    if stream is None:
                        break
                    commit = json.loads(stream.read())["release"]["commit"]
                    if isinstance(commit, str):
                        return commit
                    break
    except (OSError, EOFError, tarfile.TarError, zlib.error, ValueError, KeyError, TypeError) as error:
        msg = f"{DIST}/{archive.name}: already there, and not a release archive this pipeline can read ({type(error).__name__}); a version is released once: move it away only if it was never shipped, else raise [tool.wheelpipe.release] version"
        raise ReleaseError(msg) from None
    msg = f"{DIST}/{archive.name}: already there, and it records no release commit in {prefix}/{MANIFEST}; a version is released once: move it away only if it was never shipped, else raise [tool.wheelpipe.release] version"
    raise ReleaseError(msg)


def released_before(repo: Repository, dist: Path, commit: ReleaseCommit) -> Existing | None:
    """The version's archive already in dist/, when it is this commit's; one of another
    commit is refused, before anything is built. A dirty archive is replaced each time."""
    target = dist / f"{archive_name(repo, commit.dirty)}.tar.gz"
    if commit.dirty or not os.path.lexists(target):
        return None
    if target.is_symlink() or not target.is_file():
        msg = f"{DIST}/{target.name}: already there and not a file (a symlink or a directory); a release archive is a file: move it away"
        raise ReleaseError(msg)
    recorded = recorded_commit(target, archive_name(repo))
    if recorded != commit.label:
        msg = f"{DIST}/{target.name}: release {repo.release_version} was already made of commit {recorded}; this is commit {commit.label}: a version is released once; raise [tool.wheelpipe.release] version"
        raise ReleaseError(msg)
    return Existing(target, sha256_file(target))


def lock_gate(repo: Repository) -> None:
    report.step("release gate: the locks match their inputs")
    lock(repo, check=True)


def untracked_in_packages(repo: Repository, commit: ReleaseCommit) -> list[str]:
    """The files of the first-party packages the working tree has and the released commit
    does not: untracked ones (changes to tracked files stop the release before this)."""
    if commit.dirty:
        return []
    tree, released = firstparty.WorkingTree(repo.root), firstparty.Commit(repo.root, commit.sha)
    found = []
    for package in repo.packages.values():
        committed = {file.path for file in released.files(package)}
        found += [_shown(repo, f.location) for f in tree.files(package) if f.path not in committed]
    return sorted(found)


def _shown(repo: Repository, location: str) -> str:
    path = Path(location)
    return path.relative_to(repo.root).as_posix() if path.is_relative_to(repo.root) else location


def test_gate(repo: Repository, commit: ReleaseCommit | None = None) -> None:
    """The first-party packages' tests, run against the wheels just built for the release
    (the wheelpipe pytest plugin installs them; see packagetests)."""
    report.step("release gate: the first-party packages' tests pass against the wheels to ship")
    # The tests run from the working tree against wheels of the commit: an untracked file in
    # a package would make the plugin call the wheel stale and say to run build-wheels, which
    # cannot help (the release builds from the commit again).
    untracked = untracked_in_packages(repo, commit) if commit is not None else []
    if untracked:
        more = f" (and {len(untracked) - 1} more)" if len(untracked) > 1 else ""
        msg = (
            f"{untracked[0]}{more}: untracked, and a release is made of committed files, so its packages' tests cannot run "
            "against the wheels it ships while the working tree has it; commit it, or pass --allow-dirty"
        )
        raise ReleaseError(msg)
    test_dirs = [p.path / "tests" for p in repo.packages.values() if (p.path / "tests").is_dir()]
    if not test_dirs:
        # pytest without paths would run the repository's whole suite (its testpaths) instead.
        report.info("no first-party package has a tests/ directory: no package tests to run")
        return
    report.info(f"running the tests of {len(test_dirs)} packages: {', '.join(repo.relative(d) for d in test_dirs)}")
    try:
        run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *test_dirs], what="the first-party packages' tests", cwd=repo.root)
    except ToolError as error:
        raise ReleaseError(str(error)) from None


def check_shippable(house: Wheelhouse) -> None:
    """Wheels only, every manifest entry present and matching (open_wheelhouse), metadata valid.

    `twine check` without --strict: a wheelhouse goes to a team's own machines and registry,
    which show no project page, so a missing description is a warning naming the wheel and
    field; strictness is `invoke publish`'s, for a public index. A description that would not
    render at all is an error.
    """
    strays = sorted(p.name for p in house.path.iterdir() if p.is_file() and p.suffix != ".whl" and p.name not in (MANIFEST, CHECKSUMS))
    if strays:
        msg = f"wheelhouse/ holds files that are not wheels ({', '.join(strays)}); a release ships wheels only"
        raise ReleaseError(msg)
    first_party = sorted(house.path / e.file for e in house.entries.values() if isinstance(e.origin, BuiltOrigin))
    report.info(f"twine check on {len(first_party)} first-party wheels")
    findings = publishing.check_metadata(first_party)
    errors = [f for f in findings if f.error]
    if errors:
        named = "; ".join(f"{wheel}: {problems}" for wheel, problems in publishing.by_wheel(errors).items())
        msg = f"twine check refused {named} (an index would not render it); {publishing.DESCRIPTION_HINT}"
        raise ReleaseError(msg)
    for wheel, problems in publishing.by_wheel(findings).items():
        report.warning(f"{wheel}: {problems} (fine for this wheelhouse; `invoke publish` to a public index, or with --strict, refuses it)")


@dataclass(frozen=True)
class Member:
    """One file of the archive: a small generated document, or a wheel streamed from disk."""

    name: str  # its path in the archive
    size: int
    sha256: str
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def document(cls, name: str, text: str) -> Member:
        data = text.encode()
        return cls(name, len(data), hashlib.sha256(data).hexdigest(), data=data)


def _members(repo: Repository, house: Wheelhouse, commit: ReleaseCommit, source: firstparty.FileSource, deployed: dict[str, bytes], chart: ChartPackage | None) -> list[Member]:
    """Every file of the archive, sorted; SHA256SUMS over all the others."""
    # Imported here: cyclonedx and its schema validators take most of a second to import,
    # which every other task would otherwise pay at start-up.
    from . import sbom

    prefix = archive_name(repo, commit.dirty)
    # Everything but the wheels is derived again from the locks, the released sources and the
    # wheels' recorded origins, never copied: a damaged file in the wheelhouse cannot ship.
    derived = wheelhouse.render_wheelhouse(repo, house.entries.values(), source)
    manifest = json.loads(derived[MANIFEST])
    manifest["release"] = {"version": repo.release_version, "commit": commit.label, "commit_time": commit.time, "dirty": commit.dirty}
    # The committed Kubernetes manifests and Helm chart (invoke manifests, invoke chart), recorded by sha256.
    deployed = {f"{DEPLOY_DIR}/{name}": data for name, data in deployed.items()}
    manifest["release"]["deploy"] = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(deployed.items())}
    if chart is not None:
        # What the chart registry is given: anyone can compare the pushed layer with this.
        manifest["release"]["chart"] = {"reference": chart.reference, "package": chart.path.name, "sha256": chart.sha256}
    members = [Member.document(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True) + "\n")]
    members += [Member(f"{prefix}/{name}", len(data), hashlib.sha256(data).hexdigest(), data=data) for name, data in deployed.items()]
    for entry in house.entries.values():
        # The recorded sha256 (checked when the wheelhouse was opened) is checked again as
        # the wheel is streamed into the archive.
        wheel = house.path / entry.file
        members.append(Member(f"{prefix}/{entry.file}", wheel.stat().st_size, entry.sha256, path=wheel))
    several = len(repo.targets) > 1
    for target in repo.targets:
        for service in repo.services:
            # Each target's install manifest and its SBOM (sbom/<machine>/ with several targets).
            path = install_path(repo.targets, target, service)
            install = derived[path]
            members.append(Member.document(f"{prefix}/{path}", install))
            document = per_target_path(repo.targets, target, "sbom", f"{service}.cdx.json")
            members.append(Member.document(f"{prefix}/{document}", sbom.service_sbom(repo, house, service, install, commit.time, path, target if several else None)))
    members.sort(key=lambda m: m.name)
    sums = "".join(f"{m.sha256}  {m.name.removeprefix(prefix + '/')}\n" for m in members)
    return sorted([*members, Member.document(f"{prefix}/{CHECKSUMS}", sums)], key=lambda m: m.name)


def _tar_info(name: str, stamp: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = stamp, 0, 0, "", ""
    return info


def write_archive(members: list[Member], stamp: int, target: Path) -> None:
    """A tar.gz whose bytes depend only on the members and the stamp, written next to
    `target` and renamed onto it when complete. Members are streamed through tar and gzip."""
    with atomic_output(target) as raw:
        _write_tar(members, stamp, raw)


class _HashingSink(io.RawIOBase):
    """Where an archive is written to learn its sha256 without keeping a byte of it."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]  # gzip gives it bytes
        self.digest.update(data)
        return len(data)


def archive_sha256(members: list[Member], stamp: int) -> str:
    """The sha256 the archive of `members` would have, written nowhere."""
    sink = _HashingSink()
    _write_tar(members, stamp, sink)
    return sink.digest.hexdigest()


def _write_tar(members: list[Member], stamp: int, raw: BinaryIO | _HashingSink) -> None:
    directories = sorted({posixpath.dirname(m.name) for m in members} | {members[0].name.split("/")[0]})
    with (
        # No file name and a fixed time in the gzip header: it would differ between runs.
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=stamp, compresslevel=9) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for name in directories:
            if name:
                info = _tar_info(name, stamp)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
        for member in sorted(members, key=lambda m: m.name):
            info = _tar_info(member.name, stamp)
            info.size, info.mode = member.size, 0o644
            if member.data is not None:
                archive.addfile(info, io.BytesIO(member.data))
                continue
            assert member.path is not None  # a member is either data or a file
            with member.path.open("rb") as stream:
                reader = HashingReader(stream)
                size = os.fstat(stream.fileno()).st_size
                if size == member.size:
                    archive.addfile(info, reader)
            found = reader.digest.hexdigest()
            if size != member.size or found != member.sha256:
                msg = f"{WHEELHOUSE}/{member.path.name}: changed while the release was written (expected sha256 {member.sha256}, {member.size} bytes; found {found if size == member.size else f'{size} bytes'}); run the release again"
                raise ReleaseError(msg)


@dataclass(frozen=True)
class Released:
    archive: Path
    chart: str | None  # oci://<host>/<path>/<name>:<version>@sha256:... when this run pushed it


def release(
    repo: Repository, *, gates: bool = True, allow_dirty: bool = False,
    base_image: str = "python:3.11-slim-bookworm", docker: Docker | None = None, tags: list[ReleaseTag] | None = None,
) -> Released:
    """`base_image` stands in for the target's interpreter in the install gate when this host
    is not the target; `tags` are what the release is said to be (--tag, CI's).

    The wheelhouse is the release's from start to end (wheelhouse.held): a build-wheels run
    meanwhile waits instead of pruning the generation the archive is read from, and no other
    release writes dist/ at the same time, so a temporary archive found there is a dead one's.
    """
    with wheelhouse.held(repo.root):
        return _release(repo, gates=gates, allow_dirty=allow_dirty, base_image=base_image, docker=docker, tags=tags)


def _remove_dead_archives(dist: Path) -> None:
    """The temporary archives (atomic_output's `.<archive>.<random>.tmp`) of releases killed
    while writing them (kill -9, a power cut): their writers are gone, as the wheelhouse
    lock this release holds says."""
    for path in sorted(dist.glob(".wheelhouse-*.tar.gz.*.tmp")) if dist.is_dir() else []:
        path.unlink(missing_ok=True)
        report.info(f"removed {DIST}/{path.name}, the unfinished archive of a release that was killed")


def _release(  # noqa: C901 - the release's steps in order (gates, build, checks, chart, archive, push), each a call; the branches are the gates and the chart being on or off
    repo: Repository, *, gates: bool, allow_dirty: bool, base_image: str, docker: Docker | None, tags: list[ReleaseTag] | None,
) -> Released:
    dist = dist_directory(repo)
    commit = commit_of(repo, allow_dirty)
    if commit.dirty:
        report.info(f"releasing the working tree, which differs from commit {commit.sha[:12]}: the archive is marked {DIRTY}")
    check_tags(repo, commit, tags or [])
    existing = released_before(repo, dist, commit)
    # Where each target's install gate can run is known before anything is built.
    places = installcheck.places_for(repo, base_image, docker or Docker()) if gates else []
    if gates:
        lock_gate(repo)
    source = commit.source(repo.root)
    # Every first-party and sdist-built wheel kept from the wheelhouse is built again from the
    # release's sources and must be byte-identical: what was there before is never taken on trust.
    house = build_wheels(repo, source=source, check_rebuilds=True).wheelhouse
    if gates:
        test_gate(repo, commit)
        # The release gate of what ships: each service's install manifest for each target,
        # installed offline from these wheels, imports (see installcheck).
        for line in installcheck.check_every_target(repo, house, places):
            report.info(line)
    report.step(f"verifying the wheelhouse for release {repo.release_version} ({commit.sha[:12]}{DIRTY if commit.dirty else ''})")
    check_shippable(house)
    deployed = manifests.released(source)
    with tempfile.TemporaryDirectory(prefix="wheelpipe-chart-") as workdir:
        chart, pushing, pushed = None, False, None
        if repo.chart_registry is not None:
            chart = package_chart(repo, deployed, repo.chart_registry, Path(workdir), stamp=commit.time, made_of="the working tree" if commit.dirty else f"commit {commit.sha[:12]}")
            pushing = check_chart_unreleased(chart)
        members = _members(repo, house, commit, source, deployed, chart)
        target = dist / f"{archive_name(repo, commit.dirty)}.tar.gz"
        created_dist, existed = not dist.exists(), target.exists()
        _remove_dead_archives(dist)
        if existing is not None:
            # The same commit makes the same bytes: anything else is not this release.
            made = archive_sha256(members, commit.time)
            if made != existing.sha256:
                msg = f"{DIST}/{target.name}: holds release {repo.release_version} of commit {commit.label} with sha256 {existing.sha256}, but that commit makes sha256 {made}: a version is released once; find out what changed the archive (or the wheelhouse) before shipping either"
                raise ReleaseError(msg)
            report.info(f"{DIST}/{target.name}: already released from this commit, byte for byte: left as it is")
        try:
            if existing is None:
                write_archive(members, commit.time, target)
            if chart is not None and pushing:
                pushed = f"oci://{chart.reference}@{push_chart(chart)}"
        except BaseException:
            # A release whose chart did not reach the registry is no release: nothing of it stays.
            if not existed:
                with contextlib.suppress(OSError):
                    target.unlink()
            if created_dist:
                with contextlib.suppress(OSError):
                    dist.rmdir()
            raise
    report.info(f"wrote {DIST}/{target.name}: {len(members)} files, sha256 {sha256_file(target)}")
    return Released(target, pushed)
