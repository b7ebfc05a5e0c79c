"""Building the monorepo's own packages into reproducible wheels."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from .console import Reporter, run
from .errors import ToolError
from .model import Package

BUILD_BACKEND = "hatchling"
# Zip archives cannot store times before 1980; used when a package has no commit yet.
FALLBACK_EPOCH = 315532800
_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build", "dist", ".git", ".venv"}
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def source_fingerprint(package: Package) -> str:
    """sha256 over the package's source files (paths, executable bits and bytes).

    Equal fingerprints mean an equal wheel, so an unchanged package is never rebuilt.
    """
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(package.path):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS and not d.endswith(_IGNORED_SUFFIXES))
        for name in sorted(files):
            if name.endswith(_IGNORED_SUFFIXES):
                continue
            path = Path(directory, name)
            relative = path.relative_to(package.path).as_posix()
            executable = os.access(path, os.X_OK)
            digest.update(f"{relative}\0{int(executable)}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def source_date_epoch(root: Path, package: Package) -> int:
    """The time of the last commit touching the package: the same on every clone of a commit."""
    try:
        result = subprocess.run(
            ["git", "log", "-1", "--format=%ct", "--", package.directory],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return FALLBACK_EPOCH
    stamp = result.stdout.strip()
    return int(stamp) if result.returncode == 0 and stamp else FALLBACK_EPOCH


def backend_version() -> str:
    try:
        return metadata.version(BUILD_BACKEND)
    except metadata.PackageNotFoundError:
        msg = f"the build backend {BUILD_BACKEND} is not installed in {sys.prefix}; install the tooling lock: pip install --require-hashes -r requirements/dev.txt"
        raise ToolError(msg) from None


def build_wheel(package: Package, epoch: int, outdir: Path, reporter: Reporter) -> Path:
    """`python -m build --wheel` without isolation: the backend is the one pinned in the tooling lock."""
    outdir.mkdir(parents=True, exist_ok=True)
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", outdir, package.path],
        reporter=reporter,
        what=f"building {package.label}",
        env={"SOURCE_DATE_EPOCH": str(epoch), "PYTHONHASHSEED": "0"},
    )
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
    return wheels[0]
