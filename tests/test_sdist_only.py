"""A dependency published only as an sdist is built into a wheel by build-wheels, never at install time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from monorepo import commit_all, install_offline

from wheelpipe import load_repository
from wheelpipe.console import Reporter
from wheelpipe.fsutil import sha256_file
from wheelpipe.lockfile import parse_pins
from wheelpipe.locks import lock
from wheelpipe.wheelhouse import build_wheels

FIXTURE = Path(__file__).parent / "packages" / "sdist_only"
NAME = "wheelpipe-fixture-sdist-only"


def test_sdist_only_dependency_is_built_into_a_wheel_in_the_wheelhouse(repo_copy, tmp_path):
    index = tmp_path / "index"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", index, FIXTURE], check=True, capture_output=True)
    (sdist,) = index.glob("*.tar.gz")
    pyproject = repo_copy / "services/user/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3.0",', f'"flask>=3.0",\n    "{NAME}==0.1.0",'))
    commit_all(repo_copy, "user depends on an sdist-only package")
    repo = load_repository(repo_copy)
    find_links = ("--find-links", str(index))

    lock(repo, service="user", pip_args=find_links, reporter=Reporter())
    pinned = parse_pins(repo.lock_path("user"))[NAME]
    assert pinned.hashes == {sha256_file(sdist)}
    assert str(index) not in repo.lock_path("user").read_text()

    result = build_wheels(repo, service="user", pip_args=find_links, reporter=Reporter())
    (entry,) = [e for e in result.wheelhouse.entries.values() if e.name == NAME]
    assert entry.file == "wheelpipe_fixture_sdist_only-0.1.0-py3-none-any.whl"
    assert entry.origin["kind"] == "built-from-sdist"
    assert entry.origin["sdist"] == sdist.name
    assert entry.origin["locked_hash"] == f"sha256:{sha256_file(sdist)}"
    assert entry.services == ["user"]

    installed = install_offline(repo_copy, "user", tmp_path / "venv")
    assert installed.returncode == 0, installed.stderr
    imported = subprocess.run([tmp_path / "venv/bin/python", "-c", "import wheelpipe_fixture_sdist_only as m; print(m.ORIGIN)"], capture_output=True, text=True, check=True)
    assert "from its sdist" in imported.stdout
