"""Locks and wheelhouses for a target this host is not: uv resolves for the declared
interpreter and platform, and every wheel fetched is one the target accepts.

This host runs CPython 3.11 on x86_64 (glibc 2.36); the targets below are Debian trixie's
CPython 3.13 (glibc 2.41) and CPython 3.11 on aarch64.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import (
    ROOT,
    add_dependency,
    commit_all,
    copy_repository,
    invoke,
    member_bytes,
    one_error,
    package_index,
    retarget,
    two_platforms,
    wheelhouse_state,
)
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


# A wheelhouse for two platforms: one generation, pure wheels once, an install manifest per platform.


@pytest.fixture(scope="module")
def two_platform_house(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fixture monorepo declaring x86_64 and aarch64, locked and its wheelhouse
    built once for this module (its packages are pure; markupsafe is compiled, a wheel each)."""
    repository = copy_repository(tmp_path_factory.mktemp("two-platforms") / "monorepo")
    two_platforms(repository, X86_64, AARCH64)
    invoke(repository, "lock")
    commit_all(repository, "two platforms")
    invoke(repository, "build-wheels")
    return repository


@pytest.fixture
def two_platform_copy(two_platform_house: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(two_platform_house, tmp_path / "monorepo", symlinks=True))


def _runs_on(file: str, platform: str) -> bool:
    machine = platform.rsplit("_", 1)[-1] if not platform.endswith("x86_64") else "x86_64"
    tags = parse_wheel_filename(file)[3]
    return any(tag.platform == "any" or tag.platform.endswith(machine) for tag in tags)


def test_a_wheelhouse_for_x86_64_and_aarch64_holds_each_pure_wheel_once_and_an_install_manifest_per_platform(two_platform_house: Path) -> None:
    house = two_platform_house / "wheelhouse"
    manifest = json.loads((house / "manifest.json").read_text())
    assert "target" not in manifest
    assert [t["platform"] for t in manifest["targets"]] == [X86_64, AARCH64]
    files = [w["file"] for w in manifest["wheels"]]
    assert sorted(files) == sorted(p.name for p in house.glob("*.whl"))
    markupsafe = sorted(w["file"] for w in manifest["wheels"] if w["name"] == "markupsafe")
    assert len(markupsafe) == 2 and markupsafe[0].endswith("aarch64.whl") and "x86_64" in markupsafe[1], markupsafe
    # Every other distribution is one pure wheel, shared by both platforms.
    others = [w for w in manifest["wheels"] if w["name"] != "markupsafe" and w["name"] != "uv"]
    assert len({w["name"] for w in others}) == len(others)
    assert all(parse_wheel_filename(w["file"])[3] == parse_wheel_filename(w["file"])[3] and "-none-any.whl" in w["file"] for w in others), others
    assert not list((house / "install").glob("*.txt")), "one target's layout beside the per-platform one"
    repo = load_repository(two_platform_house)
    for service in repo.services:
        x86, arm = (parse_pins(house / f"install/{machine}/{service}.txt") for machine in ("x86_64", "aarch64"))
        assert {n: p.version for n, p in x86.items()} == {n: p.version for n, p in arm.items()}
        differ = sorted(n for n in x86 if x86[n].hashes != arm[n].hashes)
        assert differ == (["markupsafe"] if "markupsafe" in x86 else []), (service, differ)
        by_hash = {w["sha256"]: w["file"] for w in manifest["wheels"]}
        for machine, pins, platform in (("x86_64", x86, X86_64), ("aarch64", arm, AARCH64)):
            for pin in pins.values():
                (digest,) = pin.hashes
                assert _runs_on(by_hash[digest], platform), f"install/{machine}/{service}.txt pins {by_hash[digest]}"
        text = (house / f"install/aarch64/{service}.txt").read_text()
        assert f"Install manifest of the {service} service on {AARCH64}" in text and f"-r wheelhouse/install/aarch64/{service}.txt" in text
    output = invoke(two_platform_house, "verify-wheelhouse").stderr + invoke(two_platform_house, "verify-wheelhouse").stdout
    assert f"run on one of the targets CPython 3.11 on {X86_64} and CPython 3.11 on {AARCH64}" in output, output
    assert "install/aarch64/order.txt" in output, output
    assert "nothing to build, nothing to download" in invoke(two_platform_house, "build-wheels").stderr


def test_each_platforms_install_manifest_installs_offline_from_the_wheelhouse_alone(two_platform_house: Path, tmp_path: Path) -> None:
    """pip --isolated (no config, no mirror) with the other platform's manifest as the target
    platform: every pinned wheel is in the wheelhouse and pip takes exactly those."""
    house = two_platform_house / "wheelhouse"
    for target in load_repository(two_platform_house).targets:
        machine = target.machine
        # pip takes only the platform tags it is given: each manylinux tag the target runs.
        platforms = [arg for tag in target.manylinux_platforms() for arg in ("--platform", tag)]
        command = [
            sys.executable, "-m", "pip", "--isolated", "download", "--no-index", "--find-links", str(house), "--require-hashes", "--no-deps",
            "--only-binary", ":all:", *platforms, "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            "--dest", str(tmp_path / machine), "-r", str(house / f"install/{machine}/order.txt"),
        ]
        subprocess.run(command, check=True, capture_output=True, text=True)
        got = sorted(p.name for p in (tmp_path / machine).iterdir())
        assert any(name.startswith("markupsafe-") and name.endswith(f"{machine}.whl") for name in got), got


def test_an_aarch64_install_manifest_pinning_the_x86_64_wheel_is_named_even_with_consistent_checksums(two_platform_copy: Path) -> None:
    house = (two_platform_copy / "wheelhouse").resolve()
    manifest = json.loads((house / "manifest.json").read_text())
    x86, arm = (next(w["sha256"] for w in manifest["wheels"] if w["name"] == "markupsafe" and w["file"].endswith(f"{m}.whl")) for m in ("x86_64", "aarch64"))
    target = house / "install/aarch64/order.txt"
    text = target.read_text()
    assert arm in text
    target.unlink()
    target.write_text(text.replace(arm, x86))
    sums = house / "SHA256SUMS"
    new = hashlib.sha256(target.read_bytes()).hexdigest()
    sums_text = re.sub(r"^[0-9a-f]{64}  install/aarch64/order\.txt$", f"{new}  install/aarch64/order.txt", sums.read_text(), flags=re.MULTILINE)
    sums.unlink()
    sums.write_text(sums_text)
    for task in ("verify-wheelhouse", "build-wheels"):
        line = one_error(invoke(two_platform_copy, task, check=False))
        assert line.startswith("error: wheelhouse/install/aarch64/order.txt: not what wheelhouse/manifest.json gives: markupsafe: expected =="), line
        assert f"sha256 {arm}, found ==" in line and f"sha256 {x86}" in line, line


def test_one_services_build_after_a_second_platform_is_declared_is_refused_naming_the_other_services(repo_copy: Path) -> None:
    invoke(repo_copy, "build-wheels")
    two_platforms(repo_copy, X86_64, AARCH64)
    invoke(repo_copy, "lock")
    before = wheelhouse_state(repo_copy)
    line = one_error(invoke(repo_copy, "build-wheels", "--service", "order", check=False))
    assert line == (
        f"error: wheelhouse/manifest.json: made for the target CPython 3.11 on {X86_64}, but pyproject.toml [tool.wheelpipe.target] now declares "
        f"the targets CPython 3.11 on {X86_64} and CPython 3.11 on {AARCH64}; run `invoke build-wheels` without --service to make the wheels of service pricing-audit, user too"
    )
    assert wheelhouse_state(repo_copy) == before
    verify = one_error(invoke(repo_copy, "verify-wheelhouse", check=False))
    assert verify.startswith("error: wheelhouse/install/aarch64/order.txt: stale: requirements/order.txt pins markupsafe=="), verify
    assert verify.endswith(f"for CPython 3.11 on {AARCH64}; run `invoke build-wheels`"), verify


def test_a_release_of_two_platforms_holds_each_wheel_once_an_install_manifest_and_an_sbom_per_platform_and_one_sha256sums(two_platform_copy: Path) -> None:
    invoke(two_platform_copy, "release", "--skip-gates")
    (archive,) = (two_platform_copy / "dist").glob("wheelhouse-*.tar.gz")
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: member_bytes(tar, m) for m in tar.getmembers() if m.isfile()}
    manifest = json.loads(members["manifest.json"])
    assert [t["platform"] for t in manifest["targets"]] == [X86_64, AARCH64]
    wheels = sorted(name for name in members if name.endswith(".whl"))
    assert wheels == sorted(w["file"] for w in manifest["wheels"])
    assert len([w for w in wheels if w.startswith("markupsafe-")]) == 2, wheels
    services = load_repository(two_platform_copy).services
    for machine, platform in (("x86_64", X86_64), ("aarch64", AARCH64)):
        for service in services:
            install = members[f"install/{machine}/{service}.txt"].decode()
            assert install == (two_platform_copy / f"wheelhouse/install/{machine}/{service}.txt").read_text()
            sbom = json.loads(members[f"sbom/{machine}/{service}.cdx.json"])
            assert {"name": "wheelpipe:platform", "value": platform} in sbom["metadata"]["component"]["properties"]
            files = [c["purl"].rsplit("file_name=", 1)[1] for c in sbom["components"]]
            assert all(_runs_on(file, platform) for file in files), (machine, service, files)
    assert not [name for name in members if re.fullmatch(r"(install|sbom)/[^/]+", name)], "one platform's layout beside the per-platform one"
    # One SHA256SUMS over every other file of the archive.
    sums = {name: digest for digest, name in (line.split("  ", 1) for line in members["SHA256SUMS"].decode().splitlines())}
    assert set(sums) == set(members) - {"SHA256SUMS"}
    assert all(hashlib.sha256(members[name]).hexdigest() == digest for name, digest in sums.items())


def test_a_push_of_one_architecture_of_two_is_refused_before_anything_is_built(repo_copy: Path) -> None:
    two_platforms(repo_copy, X86_64, AARCH64)
    result = invoke(repo_copy, "image", "--service", "order", "--push", "--arch", "arm64", "--prefix", "127.0.0.1:5000/team/", check=False)
    assert one_error(result) == "error: --push pushes the image index of every declared platform: leave out --arch"
    assert not (repo_copy / "wheelhouse").exists()
