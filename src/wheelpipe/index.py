"""The package indexes: which files a project publishes, and downloads verified against a lock.

One client for the Simple Repository API (PEP 691 JSON, PEP 503 HTML as a fallback), so
that what the pipeline fetches is decided from the index's own file list and checked
against the locked hashes by us, byte for byte, not inferred from an installer's failure.
Downloads go through a content-addressed cache: a file is only ever taken from it under
the sha256 it was stored by, re-checked on every read. `invoke publish` reads the same API
back (with the index's credentials) to see what an index holds of what was uploaded.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import http.client
import json
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .console import parallel
from .errors import HashMismatchError, PackageIndexError
from .lockfile import Pin
from .target import Target

PYPI = "https://pypi.org/simple/"
_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
_TIMEOUT = 60
_BLOCK = 1 << 20


@dataclass(frozen=True)
class IndexFile:
    """One file an index publishes for a project."""

    index: str
    filename: str
    url: str
    sha256: str | None  # as the index declares it; the download is checked anyway
    version: Version
    tags: frozenset[Tag]  # empty for an sdist

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


@dataclass(frozen=True)
class Indexes:
    """The indexes a repository resolves and downloads from, the first one primary."""

    urls: tuple[str, ...] = (PYPI,)

    def files(self, name: str) -> list[IndexFile]:
        """Every wheel and sdist of the project on every index, in index order."""
        found: list[IndexFile] = []
        missing = []
        for url in self.urls:
            listed = _project_files(url, canonicalize_name(name))
            if listed is None:
                missing.append(url)
            else:
                found.extend(listed)
        if len(missing) == len(self.urls):
            msg = f"{name}: no such project on {', '.join(self.urls)}"
            raise PackageIndexError(msg)
        return found

    def pip_options(self) -> list[str]:
        """The same indexes for pip and pip-compile (which never write them into a lock)."""
        first, *extra = self.urls
        return ["--index-url", first, *(f"--extra-index-url={url}" for url in extra)]


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wheelpipe" / "files"


# A user name and password for an index that answers only with them (HTTP basic).
Credentials = tuple[str, str]


# A failure that says nothing of the index, only of the moment (a resolver that could not
# answer yet, a reset connection, a gateway or rate limit): asked again, twice, after a pause.
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_PAUSES = (1.0, 3.0)


def _transient(error: BaseException) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code in _TRANSIENT_STATUS
    reason = getattr(error, "reason", error)
    if isinstance(reason, socket.gaierror):
        return reason.errno == socket.EAI_AGAIN  # "Temporary failure in name resolution"
    return isinstance(reason, (TimeoutError, ConnectionResetError))


def _open(url: str, what: str, auth: Credentials | None = None) -> http.client.HTTPResponse | None:
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT, "User-Agent": "wheelpipe"})
    if auth is not None:
        # Unredirected: a redirect to another host (a CDN for the files) does not get them.
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {token}")
    for pause in (*_PAUSES, None):
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=_TIMEOUT)  # noqa: S310 - http(s) index URLs only
            return response
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            if isinstance(error, urllib.error.HTTPError):
                error.close()  # its body is not read: the connection is not left open
            if pause is not None and _transient(error):
                time.sleep(pause)
                continue
            if isinstance(error, urllib.error.HTTPError):
                if error.code == 404:
                    return None
                msg = f"{what}: the index answered HTTP {error.code} {error.reason}"
                raise PackageIndexError(msg, status=error.code) from None
            reason = getattr(error, "reason", error)
            msg = f"{what}: cannot reach the index ({reason})"
            raise PackageIndexError(msg) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def project_page(index: str, name: str) -> str:
    """The Simple API page of project `name` on `index` (a Simple API root URL)."""
    return urllib.parse.urljoin(index if index.endswith("/") else index + "/", f"{canonicalize_name(name)}/")


def project_files(index: str, name: str, auth: Credentials | None = None) -> list[IndexFile] | None:
    """Every wheel and sdist `index` lists for project `name`; None when it has no such project."""
    return _project_files(index, canonicalize_name(name), auth)


def served_sha256(file: IndexFile, auth: Credentials | None = None) -> str:
    """The sha256 of the bytes the index serves for `file`, streamed and kept nowhere."""
    response = _open(file.url, f"{file.index} ({file.filename})", auth)
    if response is None:
        msg = f"{file.url}: listed by the index but not found (HTTP 404)"
        raise PackageIndexError(msg)
    digest = hashlib.sha256()
    with response:
        try:
            for block in iter(lambda: response.read(_BLOCK), b""):
                digest.update(block)
        except (http.client.HTTPException, ConnectionError, TimeoutError) as error:
            msg = f"{file.url}: the download broke off ({error or type(error).__name__})"
            raise PackageIndexError(msg) from None
    return digest.hexdigest()


def _project_files(index: str, name: str, auth: Credentials | None = None) -> list[IndexFile] | None:
    page = project_page(index, name)
    response = _open(page, f"{page}", auth)
    if response is None:
        return None
    with response:
        body = response.read()
        kind = response.headers.get("Content-Type", "")
        final = response.geturl()
    if "json" in kind:
        try:
            listed = [(f["filename"], urllib.parse.urljoin(final, f["url"]), (f.get("hashes") or {}).get("sha256")) for f in json.loads(body)["files"]]
        except (ValueError, KeyError, TypeError) as error:
            msg = f"{page}: not a Simple API JSON page ({error})"
            raise PackageIndexError(msg) from None
    else:
        parser = _Anchors(final)
        parser.feed(body.decode("utf-8", "replace"))
        listed = parser.found
    files = []
    for filename, url, digest in listed:
        parsed = _parse_filename(filename)
        if parsed is None or parsed[0] != name:
            continue
        files.append(IndexFile(index, filename, url, digest, parsed[1], parsed[2]))
    return files


def _parse_filename(filename: str) -> tuple[str, Version, frozenset[Tag]] | None:
    """(name, version, tags) of a wheel or sdist file name; None for any other file."""
    try:
        if filename.endswith(".whl"):
            name, version, _, tags = parse_wheel_filename(filename)
            return name, version, frozenset(tags)
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return name, version, frozenset()
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


class _Anchors(html.parser.HTMLParser):
    """The file links of a PEP 503 page, with the sha256 of their URL fragment."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.found: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag != "a" or not href:
            return
        url = urllib.parse.urljoin(self.base, href)
        parts = urllib.parse.urlsplit(url)
        filename = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        algorithm, _, digest = parts.fragment.partition("=")
        self.found.append((filename, urllib.parse.urlunsplit(parts._replace(fragment="")), digest if algorithm == "sha256" else None))


def download(file: IndexFile, locked: Iterable[str], destination: Path, label: str) -> Path:
    """Fetch `file` into `destination` (a directory); its sha256 must be one of `locked`.

    A file whose bytes do not hash to a locked value is never written to `destination`:
    the error names the file, the locked hashes and the one found.
    """
    allowed = frozenset(locked)
    target = destination / file.filename
    cached = _cached(file.sha256 or "", file.filename) if file.sha256 in allowed else None
    if cached is not None:
        # A copy, not a link: the wheelhouse's files must not share bytes with the cache.
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, target)
        return target
    destination.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{file.filename}.", suffix=".part", dir=destination)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as stream:
            response = _open(file.url, f"{file.index} ({file.filename})")
            if response is None:
                msg = f"{file.url}: listed by the index but not found (HTTP 404)"
                raise PackageIndexError(msg)
            with response:
                try:
                    blocks = iter(lambda: response.read(_BLOCK), b"")
                    for block in blocks:
                        digest.update(block)
                        stream.write(block)
                except (http.client.HTTPException, ConnectionError, TimeoutError) as error:
                    msg = f"{file.url}: the download broke off ({error or type(error).__name__})"
                    raise PackageIndexError(msg) from None
        found = digest.hexdigest()
        if found not in allowed:
            expected = ", ".join(f"sha256:{h}" for h in sorted(allowed))
            msg = f"{label}: downloaded {file.filename} has sha256:{found}, which is not locked (locked: {expected})"
            raise HashMismatchError(msg)
        os.replace(partial, target)
    except OSError as error:
        Path(partial).unlink(missing_ok=True)
        if error.filename is None:
            error.filename = str(target)  # a full disk must name the file it was writing
        raise
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    _store(target, found)
    return target


def _cached(digest: str, filename: str) -> Path | None:
    path = _cache_root() / digest[:2] / digest / filename
    if not path.is_file():
        return None
    check = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(_BLOCK), b""):
            check.update(block)
    if check.hexdigest() != digest:
        path.unlink(missing_ok=True)  # a damaged cache entry is fetched again, never used
        return None
    return path


def _store(path: Path, digest: str) -> None:
    """Keep a verified download for the next run; a cache that cannot be written is no error."""
    entry = _cache_root() / digest[:2] / digest / path.name
    if entry.exists():
        return
    tmp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".", suffix=".part")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, entry)
    except OSError:
        if tmp:
            Path(tmp).unlink(missing_ok=True)


# --- which file to take for a pin ------------------------------------------------------------

# Index queries wait on the network, not on the two cores.
_PARALLEL = 8


@dataclass(frozen=True)
class Choice:
    """What the index offers for one pin: a wheel for the target, or else the locked sdist."""

    pin: Pin
    file: IndexFile

    @property
    def builds_from_sdist(self) -> bool:
        return not self.file.is_wheel


def choose(pin: Pin, files: list[IndexFile], target: Target) -> Choice:
    """The file to take for a pin, decided from the index's list alone.

    Among the files of the pinned version: the wheels whose tags the target accepts, best
    tag first; of those, the first whose published hash is locked. An sdist only when no
    wheel of that version runs on the target.
    """
    where = f"{pin.source}: {pin.requirement_line()}" if pin.source else pin.requirement_line()
    release = [f for f in files if str(f.version) == pin.version]
    if not release:
        indexes = ", ".join(sorted({f.index for f in files})) or "the index"
        msg = f"{where}: {indexes} publishes no file of this version"
        raise PackageIndexError(msg)
    priority = target.tag_priority()
    wheels = sorted(
        (f for f in release if f.is_wheel and f.tags & priority.keys()),
        key=lambda f: min(priority[t] for t in f.tags if t in priority),
    )
    candidates = wheels or [f for f in release if not f.is_wheel]
    if not candidates:
        msg = f"{where}: the index publishes neither a wheel for {target.describe()} nor an sdist"
        raise PackageIndexError(msg)
    for file in candidates:
        if file.sha256 is None or file.sha256 in pin.hashes:
            return Choice(pin, file)
    best = candidates[0]
    locked = ", ".join(f"sha256:{h}" for h in sorted(pin.hashes))
    msg = f"{where}: the index's {best.filename} has sha256:{best.sha256}, which is not locked (locked: {locked}); run `invoke lock --check`"
    raise HashMismatchError(msg)


def plan(pins: list[Pin], indexes: Indexes, target: Target) -> list[Choice]:
    """One choice per pin, from the indexes' file lists (queried concurrently)."""
    listings = parallel(lambda pin: indexes.files(pin.name), pins, _PARALLEL)
    return [choose(pin, files, target) for pin, files in zip(pins, listings, strict=True)]
