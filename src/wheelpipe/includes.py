"""What a package's build backend takes from outside the package's directory.

A Polylith project names its bricks with poetry `packages = [{include = "ns/brick", from =
"../../bases"}]`; a hatch project force-includes `"../x" = "x"`; setuptools can take its
packages from `package-dir = {"" = "../src"}`. The backend reads those paths relative to the
package, so the staged copy a wheel is built from must hold them at the same relative place
(firstparty.py stages them), and a change to them changes the package (its fingerprint, and
`invoke affected`). Only what the package's own backend reads counts: a [tool.poetry] table
under hatchling names nothing hatchling builds.

poetry-core refuses a `from` outside the project root even in the repository (Polylith's
poetry plugin copies the bricks in first); so does the staged copy: such a `from` is staged
inside the staged package under OUTSIDE_DIR and the staged pyproject.toml says so
(poetry_staged_pyproject).
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import RepositoryError

# Where poetry's outside `from` directories are staged, inside the staged package.
OUTSIDE_DIR = ".wheelpipe-outside"
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Include:
    """A path outside the package's directory that its backend includes."""

    path: str  # repository-relative, normalized, "/"-separated
    key: str  # where the package's pyproject.toml names it, e.g. "[tool.poetry] packages[0] from"
    written: str  # as written there
    # Where it is staged, relative to the staged package: its own relative path ("../../bases"),
    # or under OUTSIDE_DIR for a backend that reads only what is inside the package (poetry).
    staged: str

    def describe(self, directory: str) -> str:
        return f"{directory}/pyproject.toml: {self.key} {self.written!r}"


def find(data: dict[str, Any], backend: str, directory: str) -> tuple[Include, ...]:
    """The paths outside `directory` (repository-relative) that the pyproject `data` has its
    backend include; one that leaves the repository is one line naming the key and the path."""
    module = backend.split(":", 1)[0].strip()
    tool = _table(data, "tool")
    if module.startswith("poetry."):
        named = _poetry(tool.get("poetry"))
    elif module.startswith("hatchling."):
        named = _hatch(tool.get("hatch"))
    elif module.startswith("setuptools."):
        named = _setuptools(tool.get("setuptools"))
    else:
        return ()
    found: dict[str, Include] = {}
    for key, written, names, poetry_from in named:
        include = _resolve(directory, key, written, names, poetry_from)
        if include is not None:
            # Overlapping paths stage the same files at the same place: listed once each.
            found.setdefault(include.path, include)
    return tuple(found[path] for path in sorted(found))


def _resolve(directory: str, key: str, written: str, names: str, poetry_from: bool) -> Include | None:
    """The Include `written` at `key` makes of `names` (the path it stands for, relative to the package)."""
    where = f"{directory}/pyproject.toml: {key} {written!r}"
    if written.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", written):
        msg = f"{where}: an absolute path; name it relative to the package, inside the repository"
        raise RepositoryError(msg)
    # Only the part before the first glob: everything it can match lies under it.
    parts = []
    for part in names.replace("\\", "/").split("/"):
        if _GLOB.search(part):
            break
        parts.append(part)
    path = posixpath.normpath(posixpath.join(directory, *parts)) if parts else directory
    if path == ".." or path.startswith("../"):
        msg = f"{where}: leaves the repository (it names {path}, outside the repository's root)"
        raise RepositoryError(msg)
    if path == directory or path.startswith(f"{directory}/"):
        return None  # inside the package: staged as it always is
    if path == ".":
        msg = f"{where}: names the whole repository; name the directories the package takes"
        raise RepositoryError(msg)
    staged = f"{OUTSIDE_DIR}/{path}" if poetry_from else posixpath.relpath(path, directory)
    return Include(path, key, written, staged)


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


# What a configuration names: (its key, the value as written, the path it stands for, whether
# it is a poetry `from`).
_Named = Iterator[tuple[str, str, str, bool]]


def _poetry(table: object) -> _Named:
    if not isinstance(table, dict):
        return
    packages = table.get("packages")
    for number, entry in enumerate(packages if isinstance(packages, list) else []):
        if isinstance(entry, dict) and isinstance(entry.get("from"), str):
            include = entry.get("include")
            # The directory `from` + `include` names; `from` as a whole when include is a glob.
            inside = include if isinstance(include, str) else ""
            yield f"[tool.poetry] packages[{number}] from", entry["from"], posixpath.join(entry["from"], inside), True


def _hatch(table: object) -> _Named:
    if not isinstance(table, dict):
        return
    build = _table(table, "build")
    wheel = _table(_table(build, "targets"), "wheel")
    for prefix, settings in (("[tool.hatch.build]", build), ("[tool.hatch.build.targets.wheel]", wheel)):
        force = settings.get("force-include")
        if isinstance(force, dict):
            for source in force:
                yield f"{prefix} force-include", source, source, False
        sources = settings.get("sources")
        for source in sources if isinstance(sources, dict) else _strings(sources):
            if isinstance(source, str) and source:
                yield f"{prefix} sources", source, source, False
        for name in ("packages", "only-include"):
            for source in _strings(settings.get(name)):
                yield f"{prefix} {name}", source, source, False


def _setuptools(table: object) -> _Named:
    if not isinstance(table, dict):
        return
    package_dir = table.get("package-dir")
    if isinstance(package_dir, dict):
        for source in package_dir.values():
            if isinstance(source, str):
                yield "[tool.setuptools] package-dir", source, source, False


def poetry_staged_pyproject(text: str, directory: str) -> str:
    """The package's pyproject.toml as staged: each poetry `from` outside the package pointing
    at where it was staged instead (OUTSIDE_DIR/<its repository path>). Checked by parsing it again."""
    packages = tomllib.loads(text).get("tool", {}).get("poetry", {}).get("packages") or []
    rewritten = text
    expected: dict[int, str] = {}
    for number, entry in enumerate(packages):
        written = entry.get("from") if isinstance(entry, dict) else None
        if not isinstance(written, str):
            continue
        path = posixpath.normpath(posixpath.join(directory, written))
        if path == directory or path.startswith((f"{directory}/", "../")) or path in ("..", "."):
            continue  # inside the package (as it was), or refused when the model was read
        expected[number] = new = f"{OUTSIDE_DIR}/{path}"
        pattern = rf"""(\bfrom\s*=\s*)(["']){re.escape(written)}\2"""
        rewritten = re.sub(pattern, lambda m: f"{m.group(1)}{m.group(2)}{new}{m.group(2)}", rewritten)  # noqa: B023 (used at once)
    found = tomllib.loads(rewritten).get("tool", {}).get("poetry", {}).get("packages") or []
    if any(len(found) <= n or found[n].get("from") != value for n, value in expected.items()):
        msg = f"{directory}/pyproject.toml: cannot point [tool.poetry] packages from at the staged copy of what it names outside the package; write each from as a plain string"
        raise RepositoryError(msg)
    return rewritten
