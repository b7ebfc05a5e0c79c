"""`invoke release`: a reproducible, verifiable wheelhouse archive that installs offline elsewhere."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from monorepo import commit_all, copy_repository, fresh_venv, git, invoke, pip_in

from wheelpipe import load_repository
from wheelpipe.lockfile import parse_pins
from wheelpipe.sbom import validate

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

ARCHIVE = "dist/wheelhouse-0.1.0.tar.gz"


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the monorepo released once, with every gate."""
    repository = copy_repository(tmp_path_factory.mktemp("release") / "monorepo")
    invoke(repository, "release")
    return repository


def unpack(archive: Path, destination: Path) -> Path:
    with tarfile.open(archive) as bundle:
        bundle.extractall(destination, filter="data")
    (root,) = destination.iterdir()
    return root


def test_release_writes_the_archive_with_wheels_manifests_sboms_and_checksums(released: Path, tmp_path: Path) -> None:
    root = unpack(released / ARCHIVE, tmp_path)
    assert root.name == "wheelhouse-0.1.0"
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"manifest.json", "SHA256SUMS", "install/order.txt", "install/user.txt", "sbom/order.cdx.json", "sbom/user.cdx.json"} <= names
    assert not [n for n in names if n.endswith((".tar.gz", ".zip"))]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["release"]["version"] == "0.1.0"
    assert manifest["release"]["commit"] == git(released, "rev-parse", "HEAD").strip()
    assert {w["file"] for w in manifest["wheels"]} == {n for n in names if n.endswith(".whl")}
    checked = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=root, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert set(checked.stdout.replace(": OK", "").split()) == names - {"SHA256SUMS"}


@pytest.mark.parametrize("service", ["order", "user"])
def test_unpacked_archive_installs_each_service_offline_with_hashes_required(released: Path, tmp_path: Path, service: str) -> None:
    root = unpack(released / ARCHIVE, tmp_path / "elsewhere")
    installed = subprocess.run(
        ["unshare", "-n", *fresh_venv(tmp_path / "venv"), "install", "--isolated", "--no-index", "--find-links", root,
         "--require-hashes", "--only-binary", ":all:", "-r", root / "install" / f"{service}.txt"],
        capture_output=True, text=True, check=False,
    )
    assert installed.returncode == 0, installed.stderr
    package = load_repository(released).service(service)
    shown = subprocess.run([*pip_in(tmp_path / "venv"), "show", package.name], capture_output=True, text=True, check=True)
    assert "Version: 0.1.0" in shown.stdout


def test_a_flipped_byte_is_caught_by_the_checksums(released: Path, tmp_path: Path) -> None:
    root = unpack(released / ARCHIVE, tmp_path)
    wheel = next(root.glob("flask-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[100] ^= 0x01
    wheel.write_bytes(bytes(data))
    checked = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=root, capture_output=True, text=True, check=False)
    assert checked.returncode != 0
    assert f"{wheel.name}: FAILED" in checked.stdout


def test_a_flipped_byte_in_the_archive_itself_is_caught(released: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.tar.gz"
    data = bytearray((released / ARCHIVE).read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    result = subprocess.run(["bash", "-c", f"mkdir x && tar -xzf {damaged} -C x && cd x/* && sha256sum -c --quiet SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode != 0


@pytest.mark.parametrize("service", ["order", "user"])
def test_sbom_lists_exactly_what_the_manifest_pins_and_validates(released: Path, tmp_path: Path, service: str) -> None:
    root = unpack(released / ARCHIVE, tmp_path)
    document = (root / "sbom" / f"{service}.cdx.json").read_text()
    validate(document, f"sbom/{service}.cdx.json")
    bom = json.loads(document)
    components = [bom["metadata"]["component"], *bom["components"]]
    listed = {(c["name"], c["version"], c["hashes"][0]["content"]) for c in components}
    pins = parse_pins(root / "install" / f"{service}.txt")
    assert listed == {(p.name, p.version, next(iter(p.hashes))) for p in pins.values()}
    assert all(c["purl"].startswith(f"pkg:pypi/{c['name']}@{c['version']}") for c in components)


def test_two_releases_of_one_commit_from_different_paths_are_byte_identical(released: Path, tmp_path: Path) -> None:
    clone = tmp_path / "another" / "path"
    subprocess.run(["git", "clone", "-q", str(released), str(clone)], check=True)
    invoke(clone, "release", "--skip-gates")
    assert (clone / ARCHIVE).read_bytes() == (released / ARCHIVE).read_bytes()


def test_a_failing_gate_stops_the_release_and_writes_no_archive(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    test_file = repository / "shared/discount_calculator/tests/test_discount.py"
    test_file.write_text(test_file.read_text() + "\n\ndef test_release_gate_sees_this_failure():\n    assert False\n")
    commit_all(repository, "a failing first-party test")
    result = invoke(repository, "release", check=False)
    assert result.returncode != 0
    assert "tests" in result.stderr.strip().splitlines()[-1]
    assert not (repository / "dist").exists()


def test_a_stale_lock_stops_the_release(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    pyproject = repository / "services/user/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3.0",', '"flask>=3.0",\n    "itsdangerous>=2.0",'))
    commit_all(repository, "a dependency the lock does not know")
    result = invoke(repository, "release", check=False)
    assert result.returncode != 0
    assert "requirements/user" in result.stderr
    assert not (repository / "dist").exists()


def test_uncommitted_changes_are_refused(tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")
    readme = repository / "services/user/README.md"
    readme.write_text(readme.read_text() + "\nlocal edit\n")
    result = invoke(repository, "release", "--skip-gates", check=False)
    assert result.returncode != 0 and "uncommitted" in result.stderr


def test_with_no_package_tests_the_gate_says_so_and_runs_nothing_else(tmp_path: Path) -> None:
    """Without package tests/ directories, pytest must not fall back to the repository's suite."""
    repository = copy_repository(tmp_path / "monorepo")
    for tests in [*repository.glob("services/*/tests"), *repository.glob("shared/*/tests")]:
        subprocess.run(["git", "rm", "-rq", str(tests)], cwd=repository, check=True)
    # The repository's own suite (its testpaths), which the gate must not fall back to.
    (repository / "tests").mkdir(exist_ok=True)
    (repository / "tests" / "test_never_run_by_the_gate.py").write_text("def test_the_gate_ran_the_whole_suite():\n    assert False\n")
    commit_all(repository, "no package tests")
    result = invoke(repository, "release")
    assert "no first-party package has a tests/ directory: no package tests to run" in result.stderr
    assert (repository / ARCHIVE).is_file()
