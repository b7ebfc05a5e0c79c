"""File-system primitives that keep outputs whole: hashes, atomic writes, an exclusive lock.

Files are read in blocks, never whole: a package or a release may hold files larger than
the memory of the machine that builds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

BLOCK = 1 << 20


def copy_hashing(source: BinaryIO, digest: hashlib._Hash, destination: BinaryIO | None = None) -> int:
    """Feed `source` to `digest` (and to `destination`) block by block; the number of bytes."""
    size = 0
    for block in iter(lambda: source.read(BLOCK), b""):
        digest.update(block)
        if destination is not None:
            destination.write(block)
        size += len(block)
    return size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        copy_hashing(stream, digest)
    return digest.hexdigest()


class HashingReader:
    """A read-only stream that hashes what its reader takes, for consumers that pull (tarfile)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        block = self.stream.read(size)
        self.digest.update(block)
        return block


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A file written next to `path` and renamed onto it only if the block completes.

    Readers see the old file or the new one, never half of one; an error or an interrupt
    leaves no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` (atomically) unless it already holds exactly that; whether it
    wrote. A file left alone keeps its time, which then says when its content last changed."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomic(path, text)
    return True


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write next to the destination, then rename: readers see the old or the new file, never half."""
    with atomic_output(path) as stream:
        stream.write(data.encode() if isinstance(data, str) else data)


def fsync_tree(root: Path) -> None:
    """Flush a freshly written directory so a crash right after the switch cannot expose empty files."""
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# The locks each thread of this process holds: the same thread taking one again (a release
# that holds the wheelhouse while it builds it) holds it on, where a second flock on another
# descriptor would wait forever. Another thread still waits, as another process does.
_HELD: set[tuple[int, str]] = set()


@contextlib.contextmanager
def exclusive_lock(path: Path, on_wait: Callable[[], object]) -> Iterator[None]:
    """Serialize runs that write the same output; the kernel drops the lock if a run is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = (threading.get_ident(), os.path.realpath(path))
    if key in _HELD:
        yield
        return
    with path.open("a+") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(stream, fcntl.LOCK_EX)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(stream, fcntl.LOCK_UN)
