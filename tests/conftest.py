"""Fixtures for the pipeline's tests; the helpers behind them live in monorepo.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from monorepo import copy_repository, invoke


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    return copy_repository(tmp_path / "monorepo")


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the monorepo with its wheelhouse built once for the whole session."""
    repository = copy_repository(tmp_path_factory.mktemp("built") / "monorepo")
    invoke(repository, "build-wheels")
    return repository
