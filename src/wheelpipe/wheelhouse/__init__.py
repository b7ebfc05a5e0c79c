"""`invoke build-wheels` and `invoke verify-wheelhouse`: the wheelhouse, its install manifests and their checks.

Layout: `wheelhouse` is a symlink to one complete generation under `.wheelhouse/`.
A run builds the next generation beside it (hard-linking what did not change) and
switches the symlink in one rename, so a failed, interrupted or killed run leaves the
previous wheelhouse whole; an exclusive lock serializes concurrent runs.

Only the wheels and manifest.json's record of where each came from are facts. Everything
else (install/<service>.txt, SHA256SUMS, and who uses each wheel) is derived from them, the
current locks and the target by the render functions (verify.py): build-wheels writes what they
give, `verify_against` compares what is there with what they give, and a release ships
what they give, so the three cannot drift apart. Every wheel's tags are checked against
the target, so changing the target remakes each wheel it does not run.

Nothing a wheelhouse says of itself is trusted: it may be a CI cache another branch wrote.
A derived file that is not what manifest.json gives stops the run (it is never written anew
from what it describes); every third-party wheel is held to the hashes the locks pin, never to
manifest.json's copy; and a first-party or sdist-built wheel is taken as it is only in a
wheelhouse this clone wrote itself (store.py's record): in any other, and in every release, it is
built again and must be byte-identical.

The package: manifest.py (manifest.json's record of each wheel, Entry and its origin, and the
derived files), store.py (generations, the symlink switch, the lock, the record of what this
clone wrote), verify.py (a wheelhouse checked on its own and against the repository), plan.py
(what a run reuses, builds and downloads, and who installs what) and build.py (`invoke
build-wheels`).
"""

from .build import build_wheels
from .manifest import (
    CHECKSUMS,
    INSTALL_DIR,
    MANIFEST,
    STORE,
    WHEELHOUSE,
    BuiltOrigin,
    DownloadedOrigin,
    Entry,
    SdistOrigin,
    Wheelhouse,
    install_path,
    per_target_path,
    render_checksums,
)
from .store import held
from .verify import Result, Verified, check_intact, check_locked, open_wheelhouse, render_wheelhouse, verify, verify_against

__all__ = [
    "CHECKSUMS",
    "INSTALL_DIR",
    "MANIFEST",
    "STORE",
    "WHEELHOUSE",
    "BuiltOrigin",
    "DownloadedOrigin",
    "Entry",
    "Result",
    "SdistOrigin",
    "Verified",
    "Wheelhouse",
    "build_wheels",
    "check_intact",
    "check_locked",
    "held",
    "install_path",
    "open_wheelhouse",
    "per_target_path",
    "render_checksums",
    "render_wheelhouse",
    "verify",
    "verify_against",
]
