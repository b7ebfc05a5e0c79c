"""Fixtures for the pipeline's tests; the helpers behind them live in monorepo.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from monorepo import copy_repository, invoke, unavailable

# Fixture packages and monorepos: their own tests run in the copies the tests make, not here.
collect_ignore = ["packages"]


# Fixtures that fetch from the package index (build-wheels downloads the third-party wheels):
# a test that uses one, however indirectly, needs the index, and says so.
FETCHING_FIXTURES = {"built_repo"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if FETCHING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    return copy_repository(tmp_path / "monorepo")


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the monorepo with its wheelhouse built once for the whole session."""
    repository = copy_repository(tmp_path_factory.mktemp("built") / "monorepo")
    invoke(repository, "build-wheels")
    return repository


@pytest.fixture
def built_copy(built_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the session's built monorepo (the wheelhouse symlink is relative)."""
    return Path(shutil.copytree(built_repo, tmp_path / "monorepo", symlinks=True))


# Base images an image build can start from, in order of preference: the official image,
# else the one `invoke base-image` bootstraps where no registry is reachable.
BASE_IMAGE_CANDIDATES = ("python:3.11-slim-bookworm", "local/python:3.11-slim-bookworm")


@pytest.fixture(scope="session")
def docker_base_image() -> str:
    """The base image for image builds: $INVOKE_IMAGE_BASE, else the first candidate present.

    Skips (fails under CI=true) when no engine is reachable or no base image exists.
    """
    import os
    import shutil
    import subprocess

    if not shutil.which("docker"):
        unavailable("no docker client on PATH: install Docker (Debian: apt-get install docker.io)")
    try:
        engine = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        engine = None
    if engine is None or engine.returncode != 0 or not engine.stdout.strip():
        detail = engine.stderr.strip().splitlines()[-1] if engine is not None and engine.stderr.strip() else "docker info timed out"
        unavailable(f"no Docker engine reachable ({detail}): start dockerd (CI runs .ci/docker-engine)")

    def present(reference: str) -> bool:
        found = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True, text=True, check=False)
        return found.returncode == 0

    configured = os.environ.get("INVOKE_IMAGE_BASE")
    if configured:
        if not present(configured):
            unavailable(f"no base image: INVOKE_IMAGE_BASE={configured} is not in the engine; pull it or run `invoke base-image`")
        return configured
    for candidate in BASE_IMAGE_CANDIDATES:
        if present(candidate):
            return candidate
    unavailable(f"no base image: none of {', '.join(BASE_IMAGE_CANDIDATES)} is in the engine; pull one or run `invoke base-image`")
    raise AssertionError("unreachable")
