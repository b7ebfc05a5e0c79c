"""Locks and wheelhouses for a target this host is not: uv resolves for the declared
interpreter and platform, and every wheel fetched is one the target accepts.

This host runs CPython 3.11 on x86_64 (glibc 2.36); the targets below are Debian trixie's
CPython 3.13 (glibc 2.41) and CPython 3.11 on aarch64.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import ROOT, add_dependency, invoke, one_error, package_index, retarget
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


def two_platforms(repository: Path, *platforms: str) -> None:
    """Declare `platforms` (same interpreter) in a copy's root pyproject.toml."""
    pyproject = repository / "pyproject.toml"
    text, count = re.subn(r'^platform = "[^"]+"$', f"platforms = {json.dumps(list(platforms))}", pyproject.read_text(), flags=re.MULTILINE)
    assert count == 1, f"unexpected layout of {pyproject}"
    pyproject.write_text(text)


X86_64, AARCH64 = "manylinux_2_36_x86_64", "manylinux_2_36_aarch64"
X86_64_ONLY = ROOT / "tests" / "packages" / "x86_64_only"


def wheel_hashes(repository: Path, name: str, version: str) -> dict[str, set[str]]:
    """The sha256 of each wheel of name==version the index publishes that only one of the
    repository's platforms runs, by that platform's architecture (from the index's own list)."""
    repo = load_repository(repository)
    found: dict[str, set[str]] = {target.machine: set() for target in repo.targets}
    for file in repo.indexes.files(name):
        runs_on = [t.machine for t in repo.targets if file.tags & t.accepts()]
        if str(file.version) == version and file.sha256 and len(runs_on) == 1:
            found[runs_on[0]].add(file.sha256)
    return found


def test_one_lock_for_x86_64_and_aarch64_is_exactly_the_lock_of_each_platform_alone(repo_copy: Path) -> None:
    two_platforms(repo_copy, X86_64, AARCH64)
    result = invoke(repo_copy, "lock")
    for service in ("order", "user"):
        for machine in ("x86_64", "aarch64"):
            assert f"resolving requirements/{service}.txt for {machine} with uv" in result.stderr
    invoke(repo_copy, "lock", "--check")
    markupsafe = parse_pins(repo_copy / "requirements/order.txt")["markupsafe"]
    for machine, hashes in wheel_hashes(repo_copy, "markupsafe", markupsafe.version).items():
        assert hashes and hashes <= markupsafe.hashes, f"the lock lacks the {machine} wheels of markupsafe {markupsafe.version}"
    locks = {p.name: p.read_bytes() for p in (repo_copy / "requirements").glob("*.txt")}
    # The lock of both is each one's lock: every pin and every hash either platform needs.
    for platform in (X86_64, AARCH64):
        pyproject = repo_copy / "pyproject.toml"
        pyproject.write_text(re.sub(r"^platforms? = .*$", f'platform = "{platform}"', pyproject.read_text(), flags=re.MULTILINE))
        invoke(repo_copy, "lock", "--check")
    assert {p.name: p.read_bytes() for p in (repo_copy / "requirements").glob("*.txt")} == locks


def test_the_aarch64_wheels_cut_from_a_lock_are_named_by_lock_check(repo_copy: Path) -> None:
    two_platforms(repo_copy, X86_64, AARCH64)
    invoke(repo_copy, "lock")
    lock = repo_copy / "requirements/order.txt"
    markupsafe = parse_pins(lock)["markupsafe"]
    cut = wheel_hashes(repo_copy, "markupsafe", markupsafe.version)["aarch64"]
    assert cut
    # As a hand edit (or a lock made for x86_64 alone by another tool) would leave it.
    text = lock.read_text()
    for digest in cut:
        text = text.replace(f"    --hash=sha256:{digest} \\\n", "").replace(f" \\\n    --hash=sha256:{digest}\n", "\n")
    lock.write_text(text)
    assert parse_pins(lock)["markupsafe"].hashes == markupsafe.hashes - cut
    result = invoke(repo_copy, "lock", "--check", check=False)
    assert result.returncode == 1
    assert "requirements/order.txt" in result.stderr and "markupsafe" in result.stderr, result.stderr


def test_a_dependency_only_one_platform_needs_is_refused_naming_it_and_both_platforms(repo_copy: Path) -> None:
    two_platforms(repo_copy, X86_64, AARCH64)
    add_dependency(repo_copy, "user", 'six; platform_machine == "aarch64"')
    before = {p.name: p.read_bytes() for p in (repo_copy / "requirements").iterdir()}
    result = invoke(repo_copy, "lock", check=False)
    assert result.returncode == 1
    line = one_error(result)
    assert line.startswith("error: requirements/user.txt: the platforms resolve six differently (not needed on x86_64, "), line
    assert re.search(r", [\d.]+ on aarch64\); one lock serves every platform of \[tool\.wheelpipe\.target\]", line), line
    assert {p.name: p.read_bytes() for p in (repo_copy / "requirements").iterdir()} == before


@pytest.fixture
def x86_64_only_index(tmp_path: Path) -> Iterator[str]:
    """A real index (pypiserver on loopback, no fallback) holding one package, published as a
    manylinux x86_64 wheel alone: no aarch64 wheel, no sdist. Its simple URL."""
    packages = tmp_path / "index"
    build = [
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--no-isolation",
        "--outdir",
        str(tmp_path / "built"),
        str(shutil.copytree(X86_64_ONLY, tmp_path / "src")),
    ]
    subprocess.run(build, check=True, capture_output=True)
    (pure,) = (tmp_path / "built").glob("*.whl")
    retag = [sys.executable, "-m", "wheel", "tags", "--python-tag", "cp311", "--abi-tag", "cp311", "--platform-tag", "manylinux_2_17_x86_64", str(pure)]
    subprocess.run(retag, check=True, capture_output=True)
    packages.mkdir()
    for wheel in (tmp_path / "built").glob("*manylinux_2_17_x86_64.whl"):
        shutil.move(wheel, packages / wheel.name)
    with package_index(packages, tmp_path / "server.log") as port:
        yield f"http://127.0.0.1:{port}/simple/"


def test_a_pin_with_no_aarch64_wheel_and_no_sdist_is_one_line_naming_it_and_the_platform(repo_copy: Path, x86_64_only_index: str) -> None:
    root = repo_copy / "pyproject.toml"
    root.write_text(root.read_text() + f'\n[tool.wheelpipe.index]\nextra-urls = ["{x86_64_only_index}"]\n')
    add_dependency(repo_copy, "user", "wheelpipe-fixture-x86-64-only==1.0.0")
    invoke(repo_copy, "lock")  # x86_64 alone: it resolves
    before = {p.name: p.read_bytes() for p in (repo_copy / "requirements").iterdir()}

    two_platforms(repo_copy, X86_64, AARCH64)
    line = one_error(invoke(repo_copy, "lock", check=False))
    assert line.startswith("error: requirements/user.txt: cannot resolve requirements/user.in for aarch64: "), line
    assert "wheelpipe-fixture-x86-64-only" in line and "manylinux_2_36_aarch64" in line, line
    assert {p.name: p.read_bytes() for p in (repo_copy / "requirements").iterdir()} == before
