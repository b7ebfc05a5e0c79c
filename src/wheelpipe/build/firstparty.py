"""Building the monorepo's own packages into reproducible wheels.

A wheel is never built from a package's directory in place. A file source lists the
package's files (the working tree as git sees it, or a commit), they are staged into a
clean directory, and the wheel is built there; the fingerprint recorded in the manifest
is taken over exactly the staged files. So an untracked or ignored file, or a file a
symlink reaches outside the repository, can never slip into a wheel unrecorded. The
backend runs as sdists runs one on this host (a compiler records the staging directory as
/build, so compiled code is byte-identical from any clone); a wheel holding compiled code
goes on to compiled.py, to be built for the target's interpreter and tagged for its platform.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import stat
import tomllib
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

import pyproject_hooks

from .. import includes
from ..errors import GitError, PipelineError, ToolError
from ..fsutil import copy_hashing
from ..includes import Include
from ..model import BuildSystem, Package, PackageLocation
from ..requirements import BUILD_LOCK
from ..tools import CompletedProcess, git, stream_output
from . import environment, runner

# This repository's own packages are built by hatchling; `invoke affected` watches its pin.
BUILD_BACKEND = "hatchling"
# Zip archives cannot store times before 1980; used when a package has no commit yet.
FALLBACK_EPOCH = 315532800
# Outside a git work tree nothing says what is generated: skip what tools leave behind.
_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build", "dist", ".pdm-build", ".git", ".venv"}
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
# What backends and tools leave in a package directory: never staged unless committed, even
# where no .gitignore rule names it (a stale build/lib/ would otherwise reach the wheel).
_TOOL_OUTPUT = ("build/", "dist/", ".pdm-build/", "*.egg-info/", "__pycache__/", "*.py[co]")
_SYMLINK_MODE = "120000"
_EXECUTABLE_MODE = "100755"
# The kernel's own limit (MAXSYMLINKS): a longer chain is a loop.
_SYMLINK_HOPS = 40


class SourceError(PipelineError):
    """A package holds a file that cannot be built into a wheel faithfully."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a package as it is staged and fingerprinted."""

    path: str  # relative to the package directory, "/"-separated
    executable: bool
    location: str  # where its bytes are: a path on disk, or "<commit>:./<path>" for git


class FileSource(ABC):
    """Where the files of first-party packages come from. What it lists is all a build sees."""

    root: Path

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def files(self, package: Package | PackageLocation) -> list[SourceFile]:
        """The package's files, in fingerprint order; a file that cannot be built faithfully raises SourceError."""

    @abstractmethod
    def contents(self, files: Sequence[SourceFile]) -> Iterator[tuple[SourceFile, BinaryIO]]:
        """Each file with a stream of its bytes, in order; read a stream before taking the next."""

    @abstractmethod
    def date_epoch(self, package: Package | PackageLocation) -> int:
        """SOURCE_DATE_EPOCH for the package: the same on every clone of a commit."""


@dataclass(frozen=True)
class WorkingTree(FileSource):
    """The files git would see in the work tree: tracked ones and untracked ones not ignored,
    read from disk. Outside a git work tree, every file but the usual build and cache output."""

    root: Path

    def describe(self) -> str:
        return "the working tree"

    def files(self, package: Package | PackageLocation) -> list[SourceFile]:
        found = {}
        for include in (None, *package.includes):
            directory = include.path if include else package.directory
            names = self._listing(directory)
            if include is not None and not names:
                raise _nothing_included(package, include)
            for name in names:
                for file in self._files(name, self.root / name, _staged_path(package, include, name), frozenset()):
                    found[file.path] = file
        if not found:
            msg = f"{package.directory}: no files that git does not ignore; check the .gitignore files above it"
            raise SourceError(msg)
        return [found[name] for name in sorted(found, key=_walk_order)]

    def contents(self, files: Sequence[SourceFile]) -> Iterator[tuple[SourceFile, BinaryIO]]:
        for file in files:
            with open(file.location, "rb") as stream:
                yield file, stream

    def date_epoch(self, package: Package | PackageLocation) -> int:
        return source_date_epoch(self.root, package)

    @cached_property
    def _in_git(self) -> bool:
        try:
            result = _git(self.root, "rev-parse", "--is-inside-work-tree")
        except FileNotFoundError:
            return False
        if result.returncode == 0:
            return result.stdout.strip() == b"true"
        message = result.stderr.decode(errors="replace").strip()
        if "not a git repository" in message:
            return False
        msg = f"{self.root}: git cannot read this work tree ({message})"
        raise GitError(msg)

    def _listing(self, directory: str) -> list[str]:
        """The repository-relative paths of the files under `directory` (or of that file) git would see."""
        raw = self._git_listing(directory) if self._in_git else _walk(self.root, directory)
        return [_decoded(directory, name) for name in raw]

    def _git_listing(self, directory: str) -> list[bytes]:
        # --exclude applies to untracked files only: a committed file is always staged.
        excludes = [f"--exclude={pattern}" for pattern in _TOOL_OUTPUT]
        result = _git(self.root, "--literal-pathspecs", "ls-files", "--cached", "--others", "--exclude-standard", *excludes, "-z", "--", directory)
        _check(result, f"listing the files of {directory}")
        return [name for name in result.stdout.split(b"\0") if name]

    def _files(self, label: str, path: Path, staged: str, expanding: frozenset[Path]) -> list[SourceFile]:
        """The file at `path`, shown as `label` and staged at `staged`; a symlinked directory's files."""
        try:
            info = path.lstat()
        except FileNotFoundError:
            return []  # tracked but deleted in the work tree: not part of it
        if stat.S_ISLNK(info.st_mode):
            target = self._link_target(path, label)
            if target.is_dir():
                return self._linked_directory(label, path, target, staged, expanding)
            path, info = target, target.stat()
        if not stat.S_ISREG(info.st_mode):
            msg = f"{label}: not a regular file (a git submodule, a socket or a pipe); a wheel holds files only"
            raise SourceError(msg)
        return [SourceFile(staged, bool(info.st_mode & stat.S_IXUSR), str(path))]

    def _linked_directory(self, label: str, link: Path, target: Path, staged: str, expanding: frozenset[Path]) -> list[SourceFile]:
        """A symlink to a directory of the repository stands for the files git sees there."""
        written = os.readlink(link)
        if target in expanding or Path(os.path.realpath(link.parent)).is_relative_to(target):
            raise _loop(label, written)
        inside = target.relative_to(os.path.realpath(self.root)).as_posix()
        names = self._listing(inside)
        if not names:
            msg = f"{label}: symlink to a directory where git sees no file ({written})"
            raise SourceError(msg)
        found = []
        for name in names:
            rest = name[len(inside):]
            found += self._files(f"{label}{rest}", self.root / name, f"{staged}{rest}", expanding | {target})
        return found

    def _link_target(self, link: Path, label: str) -> Path:
        """The file or directory a symlink reaches, if it is one of the repository's own."""
        written = os.readlink(link)
        root = Path(os.path.realpath(self.root))
        target = Path(os.path.realpath(link))
        if not target.is_relative_to(root):
            raise _outside(label, written)
        if target.is_relative_to(root / ".git"):
            msg = f"{label}: symlink into git's own files ({written})"
            raise SourceError(msg)
        if not target.exists():
            # realpath gives up quietly on a cycle of links (a -> b -> a); only a strict one says
            # which it was, a cycle or a target that is not there.
            try:
                os.path.realpath(link, strict=True)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise _chain_loop(label, written) from None
            raise _dangling(label, written)
        if not target.is_dir() and self._in_git and self._ignored(target.relative_to(root).as_posix()):
            # An ignored file (a local .env, say) must not ship through a link to it.
            msg = f"{label}: symlink to a file git ignores ({written})"
            raise SourceError(msg)
        return target

    def _ignored(self, path: str) -> bool:
        result = _git(self.root, "check-ignore", "-q", "--", path)
        if result.returncode not in (0, 1):
            _check(result, f"checking whether {path} is ignored")
        return result.returncode == 0


@dataclass(frozen=True)
class Commit(FileSource):
    """The files of a commit, streamed from git: nothing in the work tree can reach a build."""

    root: Path
    revision: str  # a full commit id, so a moving HEAD cannot change what is built

    def describe(self) -> str:
        return f"commit {self.revision[:12]}"

    def files(self, package: Package | PackageLocation) -> list[SourceFile]:
        found = {}
        for include in (None, *package.includes):
            directory = include.path if include else package.directory
            entries = self._under(directory)
            if include is not None and not entries:
                raise _nothing_included(package, include)
            for entry in entries:
                name = _decoded(directory, entry.raw_path)
                for file in self._files(name, name, _staged_path(package, include, name), frozenset()):
                    found[file.path] = file
        if not found:
            msg = f"{package.directory}: no files in {self.describe()}; commit the package first"
            raise SourceError(msg)
        return [found[name] for name in sorted(found, key=_walk_order)]

    def _under(self, directory: str) -> list[_TreeEntry]:
        """The commit's files under `directory` (or that file)."""
        return [entry for path, entry in self._tree.items() if path == directory or path.startswith(f"{directory}/")]

    def _files(self, label: str, path: str, staged: str, expanding: frozenset[str]) -> list[SourceFile]:
        """The file at `path` in the commit, shown as `label` and staged at `staged`; a symlinked directory's files."""
        blob = self._tree[path]
        if blob.mode == _SYMLINK_MODE:
            link, path = path, self._resolve(path, label)
            if not path or path in self._directories:
                written = os.fsdecode(self._blob_bytes(blob.oid))
                # The link's own directory inside what it links to: it would list itself forever.
                if not path or path in expanding or link.startswith(f"{path}/"):
                    raise _loop(label, written)
                found = []
                for entry in self._under(path):
                    rest = entry.path[len(path):]
                    found += self._files(f"{label}{rest}", entry.path, f"{staged}{rest}", expanding | {path})
                return found
            blob = self._tree[path]
        if blob.kind != "blob":
            msg = f"{label}: a git submodule; a wheel holds files only"
            raise SourceError(msg)
        return [SourceFile(staged, blob.mode == _EXECUTABLE_MODE, f"{self.revision}:./{path}")]

    def contents(self, files: Sequence[SourceFile]) -> Iterator[tuple[SourceFile, BinaryIO]]:
        for file in files:
            with _blob_stream(self.root, file.location) as stream:
                yield file, stream

    def date_epoch(self, package: Package | PackageLocation) -> int:
        return source_date_epoch(self.root, package, self.revision)

    @cached_property
    def _tree(self) -> dict[str, _TreeEntry]:
        return {entry.path: entry for entry in _ls_tree(self.root, self.revision)}

    @cached_property
    def _directories(self) -> set[str]:
        return {path.rsplit("/", i)[0] for path in self._tree for i in range(1, path.count("/") + 1)}

    def _resolve(self, link: str, label: str) -> str:
        """The path, in the commit, of the file or directory a symlink reaches (through any
        chain of links; "" for the repository's root)."""
        written = os.fsdecode(self._blob_bytes(self._tree[link].oid))
        root = Path(os.path.realpath(self.root))
        pending = link.split("/")
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    raise _outside(label, written)
                resolved.pop()
                continue
            resolved.append(part)
            entry = self._tree.get("/".join(resolved))
            if entry is None or entry.mode != _SYMLINK_MODE:
                continue
            hops += 1
            if hops > _SYMLINK_HOPS:
                raise _chain_loop(label, written)
            target = os.fsdecode(self._blob_bytes(entry.oid))
            resolved.pop()
            if target.startswith("/"):
                # Absolute links only ever name this checkout's own path, if anything here.
                if not Path(target).is_relative_to(root):
                    raise _outside(label, written)
                resolved, target = [], Path(target).relative_to(root).as_posix()
            pending = target.split("/") + pending
        path = "/".join(resolved)
        if path and path not in self._tree and path not in self._directories:
            raise _dangling(label, written)
        return path

    def _blob_bytes(self, oid: str) -> bytes:
        result = _git(self.root, "cat-file", "blob", oid)
        _check(result, f"reading object {oid}")
        return result.stdout


@dataclass(frozen=True)
class _TreeEntry:
    mode: str
    kind: str  # "blob" or "commit" (a submodule)
    oid: str
    raw_path: bytes  # relative to the repository root, as git stores it
    path: str  # the same, decoded (undecodable bytes kept as surrogates)


def _ls_tree(root: Path, revision: str, directory: str | None = None) -> list[_TreeEntry]:
    """Every file under `directory` (default: the whole repository) in the commit."""
    result = _git(root, "--literal-pathspecs", "ls-tree", "-r", "-z", revision, *(["--", directory] if directory else []))
    _check(result, f"listing {directory or root.name} in commit {revision[:12]}")
    entries = []
    for line in result.stdout.split(b"\0"):
        if line:
            meta, raw_path = line.split(b"\t", 1)
            mode, kind, oid = meta.decode().split(" ")
            entries.append(_TreeEntry(mode, kind, oid, raw_path, os.fsdecode(raw_path)))
    return entries


@contextlib.contextmanager
def _blob_stream(root: Path, spec: str) -> Iterator[BinaryIO]:
    """A file of a commit as a checkout would write it (eol and smudge filters applied),
    streamed from `git cat-file --filters`. One process per file: git 2.39's --batch mode
    cannot apply filters."""
    try:
        with stream_output(["git", "cat-file", "--filters", spec], cwd=root, what=f"git cat-file --filters {spec}") as blob:
            yield blob
    except ToolError as error:
        msg = f"git cat-file could not read {spec} (exit {error.returncode}): {error.output.strip()}"
        raise GitError(msg) from None


def _git(root: Path, *args: str) -> CompletedProcess[bytes]:
    # Bytes, not text: file names are whatever bytes the file system holds.
    return git(root, *args, check=False, binary=True)


def _check(result: CompletedProcess[bytes], what: str) -> None:
    if result.returncode != 0:
        msg = f"git failed {what} (exit {result.returncode}): {result.stderr.decode(errors='replace').strip()}"
        raise GitError(msg)


def _walk(root: Path, directory: str) -> list[bytes]:
    """Outside a git work tree: the repository-relative names under `directory` (or that file)."""
    top = root / directory
    if top.is_symlink() or not top.is_dir():
        return [os.fsencode(directory)] if os.path.lexists(top) else []
    names = []
    for current, dirs, files in os.walk(top):
        # A symlink to a directory is listed, not walked: it is checked and followed as a link.
        links = [d for d in dirs if os.path.islink(os.path.join(current, d))]
        dirs[:] = [d for d in dirs if d not in _IGNORED_DIRS and not d.endswith(_IGNORED_SUFFIXES) and d not in links]
        for name in [*files, *links]:
            if not name.endswith(_IGNORED_SUFFIXES):
                names.append(os.fsencode(Path(current, name).relative_to(root)))
    return names


def _decoded(directory: str, raw: bytes) -> str:
    """A repository-relative file name, which wheels (RECORD) and the fingerprint hold as UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.removeprefix(directory.encode() + b"/").decode("utf-8", errors="backslashreplace")
        msg = f"{directory}: file name '{shown}' is not valid UTF-8; rename it"
        raise SourceError(msg) from None


def _staged_path(package: Package | PackageLocation, include: Include | None, name: str) -> str:
    """Where the file `name` (repository-relative) is staged, relative to the staged package."""
    if include is None:
        return posixpath.relpath(name, package.directory)
    return include.staged + name[len(include.path):]


def _nothing_included(package: Package | PackageLocation, include: Include) -> SourceError:
    return SourceError(f"{include.describe(package.directory)}: names {include.path}, where git sees no file")


def _walk_order(path: str) -> tuple[tuple[int, str], ...]:
    """os.walk's top-down order (a directory's files, then its subdirectories, each sorted),
    which fingerprints have always used: an unchanged package keeps its fingerprint."""
    *directories, name = path.split("/")
    return (*((1, d) for d in directories), (0, name))


def _outside(label: str, written: str) -> SourceError:
    return SourceError(f"{label}: symlink to a path outside the repository ({written})")


def _dangling(label: str, written: str) -> SourceError:
    return SourceError(f"{label}: dangling symlink: its target {written} does not exist")


def _loop(label: str, written: str) -> SourceError:
    return SourceError(f"{label}: symlink loop: {written} leads back to a directory that holds the link")


def _chain_loop(label: str, written: str) -> SourceError:
    return SourceError(f"{label}: symlink loop: its target {written} leads round a circle of symlinks, never to a file")


def _record(digest: hashlib._Hash, file: SourceFile, content: hashlib._Hash) -> None:
    digest.update(f"{file.path}\0{int(file.executable)}\0".encode())
    digest.update(content.digest())


def fingerprint(source: FileSource, package: Package | PackageLocation) -> str:
    """sha256 over the package's files (paths, executable bits and contents), streamed.

    Equal fingerprints mean an equal wheel, so an unchanged package is never rebuilt.
    """
    digest = hashlib.sha256()
    for file, stream in source.contents(source.files(package)):
        content = hashlib.sha256()
        copy_hashing(stream, content)
        _record(digest, file, content)
    return digest.hexdigest()


def stage(source: FileSource, package: Package | PackageLocation, destination: Path) -> str:
    """Copy the package's files into `destination`; the fingerprint of exactly what was copied.

    What its backend includes from outside the package lands beside it as in the repository
    (`../../bases/x` under the directory above), so `destination` must lie as deep in a
    staging directory as the package does in the repository."""
    digest = hashlib.sha256()
    for file, stream in source.contents(source.files(package)):
        target = Path(os.path.normpath(destination / file.path))
        target.parent.mkdir(parents=True, exist_ok=True)
        content = hashlib.sha256()
        with target.open("xb") as copy:
            copy_hashing(stream, content, copy)
        target.chmod(0o755 if file.executable else 0o644)
        _record(digest, file, content)
    return digest.hexdigest()


def source_date_epoch(root: Path, package: Package | PackageLocation, revision: str = "HEAD") -> int:
    """The time of the last commit up to `revision` touching the package, or what its backend
    includes from outside it."""
    paths = [package.directory, *(include.path for include in package.includes)]
    try:
        result = _git(root, "--literal-pathspecs", "log", "-1", "--format=%ct", revision, "--", *paths)
    except FileNotFoundError:
        return FALLBACK_EPOCH
    stamp = result.stdout.strip()
    return int(stamp) if result.returncode == 0 and stamp else FALLBACK_EPOCH


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    source_sha256: str  # the fingerprint of the staged files it was built from


def _hooks(workdir: Path, staged: Path, system: BuildSystem, python: str, env: dict[str, str], what: str) -> pyproject_hooks.BuildBackendHookCaller:
    """The package's own PEP 517 backend, called through pyproject_hooks in the build environment
    on this host, as runner.OnHost runs every backend here (`workdir` recorded as /build by a compiler).

    One process per hook, where `python -m build` starts a frontend too, and nothing is
    imported from the working directory, so a repository file named build.py cannot stand
    in for the frontend.
    """
    return pyproject_hooks.BuildBackendHookCaller(
        str(staged), system.backend, backend_path=list(system.backend_path) or None,
        runner=runner.OnHost().runner(workdir, env, what), python_executable=python,
    )


def _unavailable(what: str, backend: str, error: pyproject_hooks.BackendUnavailable) -> ToolError:
    return ToolError(
        f"{what}: the build backend {backend!r} cannot be imported in the build environment from "
        f"{BUILD_LOCK} ({str(error).splitlines()[0]}); add what provides it to [build-system] requires and run `invoke lock`"
    )


def _stage_clean(source: FileSource, package: Package | PackageLocation, workdir: Path) -> tuple[Path, str]:
    """The package's files staged under `workdir`, and their fingerprint."""
    staging = workdir / "source"
    # At its place in the repository: what it includes from outside (../../bases) lands at
    # its own place beside it. The directory names are the repository's, the same in every clone.
    staged = staging / package.directory
    staged.mkdir(parents=True)
    fingerprint = stage(source, package, staged)
    pyproject = staged / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    _check_text_files(package, staged, tomllib.loads(text))
    if any(include.staged.startswith(f"{includes.OUTSIDE_DIR}/") for include in package.includes) or includes.poetry_path_dependencies(tomllib.loads(text), package.directory):
        pyproject.write_text(includes.poetry_staged_pyproject(text, package.directory), encoding="utf-8")
    # Hatchling reads the first ignore file it finds from the project upwards; empty ones
    # here keep it from reading whatever lies above the staging directory.
    for name in (".gitignore", ".hgignore"):
        (staging / name).touch(exist_ok=True)
    return staged, fingerprint


def _declared_text_files(pyproject: dict[str, Any]) -> list[tuple[str, str]]:
    """The text files a package's pyproject.toml names for its metadata, each with the key
    naming it: what every backend reads, and reads as UTF-8."""
    project, tool = _table(pyproject, "project"), _table(pyproject, "tool")
    poetry, dynamic = _table(tool, "poetry"), _table(_table(tool, "setuptools"), "dynamic")
    found: list[tuple[str, str]] = []

    def add(key: str, value: object) -> None:
        names = value if isinstance(value, list) else [value]
        found.extend((key, name) for name in names if isinstance(name, str) and name)

    readme = project.get("readme")
    if isinstance(readme, dict):
        # A content type may declare another charset, which the backend then honours.
        charset = str(readme.get("content-type", "")).lower().partition("charset=")[2].strip()
        if charset in ("", "utf-8", "utf8"):
            add("[project] readme", readme.get("file"))
    else:
        add("[project] readme", readme)
    add("[project] license", _table(project, "license").get("file"))
    add("[tool.poetry] readme", poetry.get("readme"))
    add("[tool.setuptools.dynamic] readme", _table(dynamic, "readme").get("file"))
    return found


def _table(table: dict[str, Any], key: str) -> dict[str, Any]:
    value = table.get(key)
    return value if isinstance(value, dict) else {}


def _check_text_files(package: Package | PackageLocation, staged: Path, pyproject: dict[str, Any]) -> None:
    """A declared readme or license file that is not UTF-8 makes the backend fail with a bare
    UnicodeDecodeError naming no file: name the package and the file instead."""
    for key, name in _declared_text_files(pyproject):
        path = staged / name
        if not path.is_file():
            continue  # the backend says what it misses
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            who = package.label if isinstance(package, Package) else package.directory
            line = data[: error.start].count(b"\n") + 1
            msg = (
                f"{who}: {posixpath.normpath(posixpath.join(package.directory, name))}, its {key}, is not UTF-8 "
                f"(byte 0x{data[error.start]:02x} on line {line}, offset {error.start}); its build backend reads it as UTF-8: save it as UTF-8"
            )
            raise SourceError(msg) from None


def _the_wheel(package: Package, outdir: Path, source_sha256: str) -> BuiltWheel:
    wheels = list(outdir.glob("*.whl"))
    if len(wheels) != 1:
        msg = f"building {package.label}: expected one wheel in the build output, found {len(wheels)}"
        raise ToolError(msg)
    with zipfile.ZipFile(wheels[0]) as archive:
        modules = [n for n in archive.namelist() if n.endswith(".py") and ".dist-info/" not in n]
    if not modules:
        # Backends happily package nothing when the package path is wrong.
        msg = f"building {package.label}: {wheels[0].name} holds no Python module; check the wheel target's package paths in {package.directory}/pyproject.toml"
        raise ToolError(msg)
    return BuiltWheel(wheels[0], source_sha256)


def build_wheel(package: Package, source: FileSource, epoch: int, workdir: Path, python: str) -> BuiltWheel:
    """Stage the package's files in `workdir` and build its wheel there with its backend, run by
    `python`: the build environment installed from the build lock."""
    staged, source_sha256 = _stage_clean(source, package, workdir)
    outdir = workdir / "wheel"
    outdir.mkdir()
    what = f"building {package.label} from {source.describe()}"
    hooks = _hooks(workdir, staged, package.build_system, python, {"SOURCE_DATE_EPOCH": str(epoch), "PYTHONHASHSEED": "0"}, what)
    try:
        hooks.build_wheel(str(outdir))
    except pyproject_hooks.BackendUnavailable as error:
        raise _unavailable(what, package.build_system.backend, error) from None
    return _the_wheel(package, outdir, source_sha256)


def build_wheel_in(
    where: runner.InContainer, package: Package, source: FileSource, epoch: int, workdir: Path, build_lock: environment.BuildLock
) -> BuiltWheel:
    """As build_wheel, but the backend runs `where` (the target's builder container) in a
    fresh environment of the whole build lock, for the target's interpreter."""
    staged, source_sha256 = _stage_clean(source, package, workdir)
    what = f"building {package.label} from {source.describe()}"
    try:
        environment.run_backend(where, workdir, staged, package.build_system, build_lock, epoch, what)
    except pyproject_hooks.BackendUnavailable as error:
        raise _unavailable(what, package.build_system.backend, error) from None
    return _the_wheel(package, workdir / "out", source_sha256)


def prepare_metadata(location: PackageLocation, system: BuildSystem, source: FileSource, workdir: Path, python: str) -> Path:
    """The .dist-info directory the package's backend gives for its wheel (its
    prepare_metadata_for_build_wheel hook, else a wheel built and read), made from the staged files."""
    staged, _ = _stage_clean(source, location, workdir)
    outdir = workdir / "metadata"
    outdir.mkdir()
    what = f"{location.directory}: asking its build backend for its name, version and dependencies (no static [project] gives them)"
    hooks = _hooks(workdir, staged, system, python, {"SOURCE_DATE_EPOCH": str(FALLBACK_EPOCH), "PYTHONHASHSEED": "0"}, what)
    try:
        name = hooks.prepare_metadata_for_build_wheel(str(outdir), _allow_fallback=True)
    except pyproject_hooks.BackendUnavailable as error:
        raise _unavailable(what, system.backend, error) from None
    return outdir / name
