"""Locks and wheelhouses for a target this host is not: uv resolves for the declared
interpreter and platform, and every wheel fetched is one the target accepts.

This host runs CPython 3.11 on x86_64 (glibc 2.36); the targets below are Debian trixie's
CPython 3.13 (glibc 2.41) and CPython 3.11 on aarch64.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monorepo import invoke, retarget
from packaging.utils import parse_wheel_filename

from wheelpipe import load_repository
from wheelpipe.lockfile import parse_pins

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

TARGETS = {
    "cp313-trixie-x86_64": ("3.13", "cp313", "manylinux_2_41_x86_64"),
    "cp311-bookworm-aarch64": ("3.11", "cp311", "manylinux_2_36_aarch64"),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_target_this_host_is_not_gets_a_lock_and_a_wheelhouse_for_it(repo_copy: Path, name: str) -> None:
    python_version, abi, platform = TARGETS[name]
    retarget(repo_copy, python_version, abi, platform)
    result = invoke(repo_copy, "lock")
    assert f"for CPython {python_version} on {platform}" in result.stderr
    invoke(repo_copy, "lock", "--check")

    invoke(repo_copy, "build-wheels")
    repo = load_repository(repo_copy)
    accepted = repo.target.accepts()
    manifest = json.loads((repo_copy / "wheelhouse/manifest.json").read_text())
    for wheel in manifest["wheels"]:
        tags = parse_wheel_filename(wheel["file"])[3]
        assert tags & accepted, f"{wheel['file']} does not run on {repo.target.describe()}"
    markupsafe = next(w["file"] for w in manifest["wheels"] if w["name"] == "markupsafe")
    assert f"-{abi}-{abi}-" in markupsafe and markupsafe.endswith(f"_{repo.target.machine}.whl"), markupsafe
    for service in repo.services:
        pins = parse_pins(repo_copy / f"requirements/{service}.txt")
        installed = parse_pins(repo_copy / f"wheelhouse/install/{service}.txt")
        assert set(pins) <= set(installed)
    invoke(repo_copy, "verify-wheelhouse")
