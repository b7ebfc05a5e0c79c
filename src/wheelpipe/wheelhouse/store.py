"""Where wheelhouses live: generations under .wheelhouse/, the `wheelhouse` symlink switched in one rename, the lock runs hold, and the record of the wheelhouse this clone wrote."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..console import report
from ..errors import WheelhouseError, describe_os_error
from ..fsutil import exclusive_lock, sha256_file, write_atomic
from ..tools import git
from .manifest import MANIFEST, STORE, WHEELHOUSE, Wheelhouse

# Under git's own directory of the work tree (never in a CI cache of the wheelhouse): the
# sha256 of the manifest.json of the generation this clone last wrote or checked by rebuilding.
_TRUST_RECORD = "wheelpipe-wheelhouse"




def _current(root: Path) -> Path:
    link = root / WHEELHOUSE
    if not link.exists():
        msg = f"{WHEELHOUSE}/: missing; run `invoke build-wheels`"
        raise WheelhouseError(msg)
    return link.resolve()




def _trust_record(root: Path) -> Path | None:
    """Where this clone records the wheelhouse it wrote: in git's own directory of the work
    tree, which no cache of the wheelhouse restores. None outside a git work tree."""
    try:
        found = git(root, "rev-parse", "--git-path", _TRUST_RECORD, check=False)
    except FileNotFoundError:
        return None
    return root / found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else None


def _trusted(root: Path, house: Wheelhouse) -> bool:
    """Whether this clone wrote (or checked by rebuilding) this very generation: its
    manifest.json, which names every wheel's sha256 (checked when it was opened), is the one
    recorded. A restored cache, another clone's wheelhouse or an edited manifest is not."""
    record = _trust_record(root)
    try:
        return record is not None and record.read_text().strip() == sha256_file(house.path / MANIFEST)
    except OSError:
        return False


def _record_trust(root: Path, house: Wheelhouse) -> None:
    record = _trust_record(root)
    if record is not None and record.parent.is_dir():
        write_atomic(record, sha256_file(house.path / MANIFEST) + "\n")


def _strays(directory: Path, allowed: set[str]) -> list[str]:
    """Every path under `directory` that is neither one of `allowed` nor a folder holding them."""
    folders = {parent.as_posix() for name in allowed for parent in Path(name).parents} - {"."}
    found = []
    for current, dirs, files in os.walk(directory):
        relative = Path(current).relative_to(directory)
        for name in list(dirs):
            path = (relative / name).as_posix()
            if path not in folders or os.path.islink(os.path.join(current, name)):
                found.append(f"{path}/")
                dirs.remove(name)
        found += [p for p in ((relative / name).as_posix() for name in files) if p not in allowed]
    return sorted(found)


@contextlib.contextmanager
def held(root: Path) -> Iterator[None]:
    """The wheelhouse to this run alone. build-wheels holds it while it makes a generation; a
    release from building its wheels until its archive is written, so that no other run
    (`build-wheels --clean`, say) prunes the generation it reads, or writes dist/ beside it."""

    def waiting() -> None:
        report.info("another run (build-wheels or a release) holds the wheelhouse; waiting for it to finish")

    with exclusive_lock(root / STORE / ".lock", waiting):
        yield


def _switch(link: Path, generation: Path) -> None:
    """Point the wheelhouse symlink at the new generation in one rename."""
    tmp = link.with_name(f".{link.name}.{generation.name}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(generation.relative_to(link.parent))
    os.replace(tmp, link)


def _switch_or_undo(root: Path, link: Path, generation: Path) -> None:
    """_switch, or else (a root made immutable or read-only after the build began) the new
    generation and the half-made link removed, and one line saying what happened and what
    is left: a failed switch leaves no whole generation behind unnamed."""
    try:
        _switch(link, generation)
    except OSError as error:
        reason = describe_os_error(error, root)
        stranded = link.with_name(f".{link.name}.{generation.name}")
        with contextlib.suppress(OSError):
            stranded.unlink(missing_ok=True)
        shutil.rmtree(generation, ignore_errors=True)
        before = "the previous wheelhouse is intact" if link.is_symlink() else "no wheelhouse was made"
        left = [path.relative_to(root).as_posix() for path in (generation, stranded) if os.path.lexists(path)]
        after = f"left behind (remove by hand): {', '.join(left)}" if left else "nothing of the new one is left"
        msg = f"{WHEELHOUSE}: cannot point it at the new generation ({reason}); {before}, {after}"
        raise WheelhouseError(msg) from None


def _remove_leftovers(root: Path, store: Path) -> None:
    """Partial generations of killed runs never become visible; remove them."""
    for path in store.glob("partial-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in [*store.glob("wheelpipe-fetch-*"), *store.glob("wheelpipe-check-*")]:
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(f".{WHEELHOUSE}.gen-*"):
        path.unlink(missing_ok=True)


def _prune(store: Path, keep: set[str]) -> None:
    # The previous generation stays: a reader that resolved the old symlink may still use it.
    for path in store.glob("gen-*"):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
