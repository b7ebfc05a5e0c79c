"""`invoke release`: a verified, reproducible wheelhouse archive another machine can install from.

dist/wheelhouse-<version>.tar.gz holds, under wheelhouse-<version>/: every wheel, the
install manifests, manifest.json (with the release version and commit), a CycloneDX SBOM
per service and SHA256SUMS over all of it. Entries are sorted and owners, modes and
times fixed (the commit time), so two releases of one commit are byte-identical.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from .console import Reporter, run
from .errors import PipelineError, ToolError
from .fsutil import sha256_file, write_atomic
from .locks import lock
from .model import Repository
from .wheelhouse import CHECKSUMS, INSTALL_DIR, MANIFEST, Wheelhouse, build_wheels

DIST = "dist"


class ReleaseError(PipelineError):
    """A release gate failed or the wheelhouse is not fit to ship."""


def archive_name(repo: Repository) -> str:
    return f"wheelhouse-{repo.release_version}"


def _git(repo: Repository, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo.root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"{repo.root.name}: a release needs a git commit (git {' '.join(args)}: {result.stderr.strip()})"
        raise ReleaseError(msg)
    return result.stdout.strip()


def commit_of(repo: Repository, allow_dirty: bool) -> tuple[str, int]:
    """The commit a release is made of, and its time; a dirty tree would not be reproducible."""
    commit = _git(repo, "rev-parse", "HEAD")
    if not allow_dirty and _git(repo, "status", "--porcelain", "--untracked-files=no"):
        msg = "the work tree has uncommitted changes: a release is made of a commit (commit them, or pass --allow-dirty)"
        raise ReleaseError(msg)
    return commit, int(_git(repo, "log", "-1", "--format=%ct"))


def run_gates(repo: Repository, reporter: Reporter) -> None:
    reporter.step("release gates: locks match their inputs, first-party tests pass")
    lock(repo, check=True, reporter=reporter)
    test_dirs = [p.path / "tests" for p in repo.packages.values() if (p.path / "tests").is_dir()]
    try:
        run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *test_dirs], reporter=reporter, what="the first-party packages' tests", cwd=repo.root)
    except ToolError as error:
        raise ReleaseError(str(error)) from None


def check_shippable(house: Wheelhouse, reporter: Reporter) -> None:
    """Wheels only, every manifest entry present and matching (open_wheelhouse), metadata valid."""
    strays = sorted(p.name for p in house.path.iterdir() if p.is_file() and p.suffix != ".whl" and p.name not in (MANIFEST, CHECKSUMS))
    if strays:
        msg = f"wheelhouse/ holds files that are not wheels ({', '.join(strays)}); a release ships wheels only"
        raise ReleaseError(msg)
    first_party = sorted(house.path / e.file for e in house.entries.values() if e.origin["kind"] == "built")
    reporter.info(f"twine check --strict on {len(first_party)} first-party wheels")
    try:
        run([sys.executable, "-m", "twine", "check", "--strict", *first_party], reporter=reporter, what="twine check")
    except ToolError as error:
        raise ReleaseError(str(error)) from None


def _members(repo: Repository, house: Wheelhouse, commit: str, stamp: int) -> dict[str, bytes]:
    """Archive path -> bytes, SHA256SUMS last, over everything else."""
    # Imported here: cyclonedx and its schema validators take most of a second to import,
    # which every other task would otherwise pay at start-up.
    from . import sbom

    prefix = archive_name(repo)
    manifest = json.loads((house.path / MANIFEST).read_text())
    manifest["release"] = {"version": repo.release_version, "commit": commit, "commit_time": stamp}
    members = {f"{prefix}/{MANIFEST}": (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()}
    for entry in house.entries.values():
        members[f"{prefix}/{entry.file}"] = (house.path / entry.file).read_bytes()
    for service in repo.services:
        members[f"{prefix}/{INSTALL_DIR}/{service}.txt"] = house.install_manifest(service).read_bytes()
        members[f"{prefix}/sbom/{service}.cdx.json"] = sbom.service_sbom(repo, house, service, stamp).encode()
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name.removeprefix(prefix + '/')}\n" for name, data in sorted(members.items()))
    members[f"{prefix}/{CHECKSUMS}"] = sums.encode()
    return members


def write_archive(members: dict[str, bytes], stamp: int) -> bytes:
    """A tar.gz whose bytes depend only on the members and the stamp."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        directories = sorted({str(Path(name).parent) for name in members} | {next(iter(members)).split("/")[0]})
        for name in [*(d for d in directories if d != "."), *sorted(members)]:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = stamp, 0, 0, "", ""
            if name in members:
                info.size, info.mode = len(members[name]), 0o644
                archive.addfile(info, io.BytesIO(members[name]))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
    compressed = io.BytesIO()
    # No file name and a fixed time in the gzip header: it would differ between runs.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=stamp, compresslevel=9) as stream:
        stream.write(raw.getvalue())
    return compressed.getvalue()


def release(repo: Repository, *, gates: bool = True, allow_dirty: bool = False, reporter: Reporter) -> Path:
    commit, stamp = commit_of(repo, allow_dirty)
    if gates:
        run_gates(repo, reporter)
    house = build_wheels(repo, reporter=reporter).wheelhouse
    reporter.step(f"verifying the wheelhouse for release {repo.release_version} ({commit[:12]})")
    check_shippable(house, reporter)
    members = _members(repo, house, commit, stamp)
    target = repo.root / DIST / f"{archive_name(repo)}.tar.gz"
    write_atomic(target, write_archive(members, stamp))
    reporter.info(f"wrote {DIST}/{target.name}: {len(members)} files, sha256 {sha256_file(target)}")
    return target
