"""`invoke affected`: which services' images a change since a git ref can alter.

A service is affected by a changed path when the path is part of what its image is made of,
read from the repository model:

- its closure: any file under the directory of the service or of an internal package it uses
  (`repo.closure`), except what never reaches the wheel: the package's top-level `tests/` and
  `docs/` directories and its top-level documentation files (README*, *.md, *.rst). The one
  exception is the file the package's pyproject.toml declares as `[project] readme`: the build
  backend copies it into the wheel's METADATA (and fails without it), so it is part of the
  wheel like the code. A .md file *inside* the package's sources (package data) counts too;
  and so does any file under what its backend's configuration takes from outside its
  directory (`Package.includes`: Polylith's bricks, hatch's force-include) or under a
  directory of the repository one of its symlinks stands for;
- its locks: `requirements/<service>.in` and `requirements/<service>.txt`;
- the image recipe: anything under `dockerfiles/` (a monorepo's own recipe), or, when this is
  wheelpipe's repository, the recipe and the import check it ships into every build, affects
  every service;
- the target: a change of the `[tool.wheelpipe.target]` table of the root pyproject.toml
  affects every service; any other change there (pytest settings, the release version) none;
- the tooling that goes into every image: the pin of uv (the images' installer) in
  `requirements/dev.txt` (any other tooling pin affects none), and any pin of the build lock
  `requirements/build.txt` (the first-party packages' build backends: which package a pin
  reaches is known only in its environment, so any pin that moves counts for every service);
- the build lock of an sdist-only dependency its lock pins, `requirements/sdists/<name>-<version>.txt`,
  when a pin there moves (the wheel built from that sdist is built again).

A service whose directory did not exist at the ref is affected as a whole. Nothing else (the
root README, the pipeline's own code and tests, CI files) affects an image by this rule; the
pipeline's code is covered by its own tests in the `check` job.

"Affected" means the image's installed content or recipe may differ. It does not mean "the
image bytes are identical otherwise": a first-party wheel's SOURCE_DATE_EPOCH is the time of
the last commit touching its package, so a commit touching only its tests moves timestamps.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import tomllib
from pathlib import Path, PurePosixPath

from .errors import GitError, LockError, PipelineError
from .lockfile import parse_pins
from .model import DOCKERFILES_DIR, Package, Repository
from .requirements import BUILD_LOCK, INSTALLER, SDIST_LOCKS_DIR, TOOLING_LOCK, lock_file, sdist_lock_file
from .resources import SERVICE_DOCKERFILE_SOURCE
from .tools import CompletedProcess, git

# What wheelpipe's repository ships into every image build (the recipe, and the import check
# every build runs): in that repository, a change to either affects every service.
SHIPPED_INTO_EVERY_BUILD = (SERVICE_DOCKERFILE_SOURCE, "src/wheelpipe/importcheck.py")

ROOT_PYPROJECT = "pyproject.toml"
# Pins of the tooling lock that end up in every image.
IMAGE_TOOLING = (INSTALLER,)
_DOC_NAME = re.compile(r"^(README.*|.*\.(md|rst))$", re.IGNORECASE)
_ZERO_SHA = re.compile(r"^0+$")


def affected_services(repo: Repository, since: str, *, all_if_unknown: bool = False) -> dict[str, list[str]]:
    """Each affected service mapped to the changed paths that affect it, sorted.

    With `all_if_unknown`, a ref that names no commit here (empty, GitHub's all-zero `before`
    of a new branch, or a force-pushed-away commit) means every service, each with one reason
    saying so; without it, such a ref is an error naming it.
    """
    base = _base_commit(repo.root, since, all_if_unknown)
    if base is None:
        reason = f"{since or '(empty ref)'}: not a known commit, so every service"
        return {service: [reason] for service in repo.services}

    changed = _changed_paths(repo.root, base)
    everyone = sorted(_affecting_every_service(repo.root, base, changed))
    linked = {package.name: _linked_directories(repo.root, package) for package in repo.packages.values()}
    found: dict[str, list[str]] = {}
    sdist_locks = _moved_sdist_locks(repo.root, base, changed)
    for service, package in repo.services.items():
        reasons = set(everyone)
        locks = {lock_file(service, "in"), lock_file(service)} | _sdist_locks_of(repo.root, service, sdist_locks)
        closure = repo.closure(service)
        for path in changed:
            if path in locks or any(_part_of_wheel(member, path, linked[member.name]) for member in closure):
                reasons.add(path)
        if not _exists_at(repo.root, base, package.directory):
            reasons.add(f"{package.directory}/")  # new since the ref: its whole directory
        if reasons:
            found[service] = sorted(reasons)
    return found


def render(since: str, found: dict[str, list[str]], as_json: bool) -> str:
    """Plain: one service per line (empty when none). JSON: since, services, reasons."""
    if as_json:
        return json.dumps({"since": since, "services": list(found), "reasons": found}, indent=2)
    return "\n".join(found)


def render_services(repo: Repository, as_json: bool) -> str:
    """Every service of the model: one per line, or a JSON list."""
    names = list(repo.services)
    return json.dumps(names) if as_json else "\n".join(names)


def write_github_output(services: list[str], **values: object) -> Path:
    """Append `services=<JSON list>` (and each value, as JSON) to the file $GITHUB_OUTPUT names.

    This is how a GitHub Actions step publishes outputs; the JSON list feeds
    `fromJSON(needs.<job>.outputs.services)` for a matrix, and `[]` means none.
    """
    target = os.environ.get("GITHUB_OUTPUT")
    if not target:
        msg = "--github-output: GITHUB_OUTPUT is not set (GitHub Actions sets it for every step)"
        raise PipelineError(msg)
    lines = [f"services={json.dumps(services, separators=(',', ':'))}"]
    lines += [f"{key}={json.dumps(value, separators=(',', ':'))}" for key, value in values.items()]
    try:
        with open(target, "a", encoding="utf-8") as stream:
            stream.write("".join(f"{line}\n" for line in lines))
    except OSError as error:
        msg = f"--github-output: cannot append to GITHUB_OUTPUT={target}: {_unwritable(error, Path(target))}"
        raise PipelineError(msg) from None
    return Path(target)


def _unwritable(error: OSError, path: Path) -> str:
    if error.errno == errno.EISDIR:
        return "it is a directory, expected a file"
    if error.errno == errno.ENOENT:
        return f"its directory {path.parent} does not exist"
    if error.errno == errno.ENOTDIR:
        return "a parent of it is not a directory"
    return error.strerror or str(error)


# -- the base commit ---------------------------------------------------------------------


def _git(root: Path, *args: str, check: bool = True) -> CompletedProcess[str]:
    try:
        # Paths and old file contents are bytes to git; a non-UTF-8 one must not stop the listing.
        result = git(root, *args, check=False, errors="surrogateescape")
    except FileNotFoundError:
        msg = "git is not installed (affected services are computed from git history)"
        raise GitError(msg) from None
    if check and result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"git {' '.join(args)} failed in {root}: {detail}"
        raise GitError(msg)
    return result


def _base_commit(root: Path, since: str, all_if_unknown: bool) -> str | None:
    """The commit to compare against, or None for "unknown, take every service".

    The base is the merge base of REF and HEAD, not REF itself (the `REF...HEAD` semantics
    of a pull request's diff): on a pull request, commits that landed on the base branch after
    the branch forked are not this change's, and must not mark services as affected. When REF
    is an ancestor of HEAD (a push's `before`, `HEAD~1`) the merge base is REF itself. The
    comparison is then from that commit to the working tree, so uncommitted and untracked
    work counts too.
    """
    _git(root, "rev-parse", "--show-toplevel")  # a clear error outside a git work tree
    since = since.strip()
    if not since or _ZERO_SHA.match(since) or since.startswith("-"):
        commit = None
    else:
        resolved = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{since}^{{commit}}", check=False)
        commit = resolved.stdout.strip() if resolved.returncode == 0 else None
    if commit is None:
        if all_if_unknown:
            return None
        msg = f"--since {since!r}: not a commit in this repository (fetch it, e.g. checkout with fetch-depth 0; --all-if-unknown lists every service instead)"
        raise GitError(msg)
    merge_base = _git(root, "merge-base", commit, "HEAD", check=False)
    # No common history (or no HEAD yet): compare with REF itself.
    return merge_base.stdout.strip() if merge_base.returncode == 0 else commit


def _changed_paths(root: Path, base: str) -> list[str]:
    """Repository-relative paths that differ between `base` and the working tree, plus untracked ones.

    --no-renames lists a moved file under both names, so the package it left counts as well
    as the one it joined. --relative keeps paths relative to the monorepo's root even when it
    is a subdirectory of a larger git repository.
    """
    diff = _git(root, "diff", "--name-only", "--no-renames", "--relative", "-z", base, "--")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    names = diff.stdout.split("\0") + untracked.stdout.split("\0")
    return sorted({name for name in names if name})


def _exists_at(root: Path, commit: str, directory: str) -> bool:
    return _git(root, "cat-file", "-e", f"{commit}:./{directory}", check=False).returncode == 0


def _show(root: Path, commit: str, path: str) -> str | None:
    """The file's text at the commit, or None when it did not exist there."""
    shown = _git(root, "show", f"{commit}:./{path}", check=False)
    return shown.stdout if shown.returncode == 0 else None


# -- what a path is part of --------------------------------------------------------------


def _part_of_wheel(package: Package, path: str, linked: list[str]) -> bool:
    outside = [include.path for include in package.includes] + linked
    if any(path == prefix or path.startswith(f"{prefix}/") for prefix in outside):
        return True  # named by its backend's configuration (a Polylith brick), or linked: all of it is built in
    prefix = f"{package.directory}/"
    if not path.startswith(prefix):
        return False
    inside = PurePosixPath(path[len(prefix) :])
    if inside.parts[0] in {"tests", "docs"} and len(inside.parts) > 1:
        return False
    if len(inside.parts) == 1 and _DOC_NAME.match(inside.name):
        return inside.as_posix() in _declared_readme(package)
    return True


def _linked_directories(root: Path, package: Package) -> list[str]:
    """The repository's directories that the package's symlinks stand for (their files are
    staged under the links' names), as they are in the working tree."""
    listed = _git(root, "ls-files", "-s", "-z", "--", package.directory).stdout
    real_root = Path(os.path.realpath(root))
    found = []
    for record in listed.split("\0"):
        meta, _, name = record.partition("\t")
        if meta.startswith("120000 "):
            target = Path(os.path.realpath(root / name))
            if target.is_dir() and target.is_relative_to(real_root) and target != real_root:
                found.append(target.relative_to(real_root).as_posix())
    return found


def _declared_readme(package: Package) -> set[str]:
    """The file `[project] readme` names (a string or a table with `file`), relative to the package."""
    try:
        with (package.path / "pyproject.toml").open("rb") as stream:
            readme = tomllib.load(stream).get("project", {}).get("readme")
    except (OSError, tomllib.TOMLDecodeError):
        return set()
    if isinstance(readme, dict):
        readme = readme.get("file")
    return {PurePosixPath(readme).as_posix()} if isinstance(readme, str) else set()


def _affecting_every_service(root: Path, base: str, changed: list[str]) -> set[str]:
    found = {path for path in changed if path.startswith(f"{DOCKERFILES_DIR}/") or path in SHIPPED_INTO_EVERY_BUILD}
    if ROOT_PYPROJECT in changed and _target_table(_show(root, base, ROOT_PYPROJECT)) != _target_table(_read(root / ROOT_PYPROJECT)):
        found.add(ROOT_PYPROJECT)
    if TOOLING_LOCK in changed and _pins_of(_show(root, base, TOOLING_LOCK), TOOLING_LOCK, IMAGE_TOOLING) != _pins_of(_read(root / TOOLING_LOCK), TOOLING_LOCK, IMAGE_TOOLING):
        found.add(TOOLING_LOCK)
    if BUILD_LOCK in changed and _pins_of(_show(root, base, BUILD_LOCK), BUILD_LOCK) != _pins_of(_read(root / BUILD_LOCK), BUILD_LOCK):
        found.add(BUILD_LOCK)
    return found


def _moved_sdist_locks(root: Path, base: str, changed: list[str]) -> set[str]:
    """The changed sdist build locks whose pins moved (notes and layout never count)."""
    return {
        path for path in changed
        if path.startswith(f"{SDIST_LOCKS_DIR}/") and path.endswith(".txt") and _pins_of(_show(root, base, path), path) != _pins_of(_read(root / path), path)
    }


def _sdist_locks_of(root: Path, service: str, moved: set[str]) -> set[str]:
    """Of the `moved` sdist build locks, those of pins of the service's lock (as it is now)."""
    if not moved:
        return set()
    text = _read(root / lock_file(service))
    pins = _pins_of(text, lock_file(service))
    if not isinstance(pins, dict):
        return set()
    return {label for name, pinned in pins.items() if pinned and (label := sdist_lock_file(name, pinned[0])) in moved}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None


def _target_table(text: str | None) -> object:
    """[tool.wheelpipe.target] as parsed, for comparison; unreadable text compares as itself."""
    if text is None:
        return None
    try:
        return tomllib.loads(text).get("tool", {}).get("wheelpipe", {}).get("target")
    except tomllib.TOMLDecodeError:
        return ("not TOML", text)


def _pins_of(text: str | None, label: str, names: tuple[str, ...] | None = None) -> object:
    """A lock's pins (versions and hashes; of `names` only, when given), for comparison:
    comments and layout never count. Unreadable text compares as itself."""
    if text is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch, Path(label).name)
        copy.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            pins = parse_pins(copy, label)
        except (LockError, UnicodeDecodeError):
            return ("unparsable", text)
    wanted = names if names is not None else tuple(sorted(pins))
    return {name: (pins[name].version, pins[name].hashes) if name in pins else None for name in wanted}
