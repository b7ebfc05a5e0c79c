"""Dependencies published only as sdists: their build requirements are locked with hashes
(requirements/build.txt), they are built into wheels by build-wheels with exactly those,
reproducibly, and never at install time.

The sdists are served by a real index (pypiserver on loopback, no fallback) that the
copy's root pyproject.toml names as an extra index after PyPI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from monorepo import commit_all, copy_repository, free_port, install_offline, invoke, serving

from wheelpipe.fsutil import sha256_file
from wheelpipe.lockfile import parse_pins
from wheelpipe.sdists import environment_digest

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

PACKAGES = Path(__file__).parent / "packages"
HATCHLING_SDIST = "wheelpipe-fixture-sdist-only"
SETUPTOOLS_SDIST = "wheelpipe-fixture-setuptools-sdist"


@pytest.fixture(scope="module")
def sdist_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """An index holding only the two fixture sdists; its simple URL and directory."""
    root = tmp_path_factory.mktemp("sdist-index")
    packages = root / "packages"
    for fixture in ("sdist_only", "sdist_only_setuptools"):
        # A copy: setuptools writes egg-info next to the sources it builds.
        source = shutil.copytree(PACKAGES / fixture, root / "src" / fixture)
        subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", packages, source], check=True, capture_output=True)
    port = free_port()
    argv = [sys.executable, "-m", "pypiserver", "run", "-p", str(port), "-i", "127.0.0.1", "-a", ".", "-P", ".", "--disable-fallback", str(packages)]
    with serving(argv, root / "server.log", f"http://127.0.0.1:{port}/health", "pypiserver"):
        yield f"http://127.0.0.1:{port}/simple/", packages


@pytest.fixture(scope="module")
def locked_copy(tmp_path_factory: pytest.TempPathFactory, sdist_index) -> Path:
    """The monorepo with user depending on both sdist-only fixtures, locked once."""
    url, _ = sdist_index
    repository = copy_repository(tmp_path_factory.mktemp("sdist") / "monorepo")
    root = repository / "pyproject.toml"
    root.write_text(root.read_text() + f'\n[tool.wheelpipe.index]\nextra-urls = ["{url}"]\n')
    pyproject = repository / "services/user/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3.0",', f'"flask>=3.0",\n    "{HATCHLING_SDIST}==0.1.0",\n    "{SETUPTOOLS_SDIST}==0.2.0",'))
    invoke(repository, "lock")
    commit_all(repository, "user depends on two sdist-only packages")
    return repository


def test_lock_pins_the_sdists_by_hash_and_locks_their_build_requirements(locked_copy, sdist_index):
    url, packages = sdist_index
    pins = parse_pins(locked_copy / "requirements/user.txt")
    for name in (HATCHLING_SDIST, SETUPTOOLS_SDIST):
        (sdist,) = packages.glob(f"{name.replace('-', '_')}-*.tar.gz")
        assert pins[name].hashes == {sha256_file(sdist)}
    build_in = (locked_copy / "requirements/build.in").read_text()
    assert "hatchling>=1.26" in build_in.splitlines() and "setuptools>=68" in build_in.splitlines()
    build_lock = parse_pins(locked_copy / "requirements/build.txt")
    assert {"hatchling", "setuptools"} <= set(build_lock)
    assert all(pin.hashes for pin in build_lock.values())
    for path in (locked_copy / "requirements").glob("*"):
        assert url not in path.read_text() and "127.0.0.1" not in path.read_text(), path.name
    invoke(locked_copy, "lock", "--check")


def test_sdist_only_dependencies_are_built_into_wheels_and_install_offline(locked_copy, tmp_path):
    repository = shutil.copytree(locked_copy, tmp_path / "monorepo", symlinks=True)
    built = invoke(repository, "build-wheels", "--service", "user", "--verbose")
    # The build environment comes from the build lock alone: no pip resolves or downloads.
    assert " pip download" not in built.stderr and "piptools" not in built.stderr
    manifest = json.loads((repository / "wheelhouse/manifest.json").read_text())
    by_name = {w["name"]: w for w in manifest["wheels"]}
    for name in (HATCHLING_SDIST, SETUPTOOLS_SDIST):
        origin = by_name[name]["origin"]
        assert origin["kind"] == "built-from-sdist"
        assert origin["build_lock"] == "requirements/build.txt"
        # The environment it was built in: the build lock's pins and hashes, as they are now.
        assert origin["build_environment"] == environment_digest(parse_pins(repository / "requirements/build.txt"))
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", origin["build_environment"])
        assert origin["locked_hash"].removeprefix("sha256:") in parse_pins(repository / "requirements/user.txt")[name].hashes
        assert by_name[name]["services"] == ["user"]

    installed = install_offline(repository, "user", tmp_path / "venv")
    assert installed.returncode == 0, installed.stderr
    imported = subprocess.run(
        [tmp_path / "venv/bin/python", "-c", "import wheelpipe_fixture_sdist_only as a, wheelpipe_fixture_setuptools_sdist as b; print(a.ORIGIN, b.ORIGIN)"],
        capture_output=True, text=True, check=True,
    )
    assert "from its sdist" in imported.stdout and "setuptools" in imported.stdout


def test_two_builds_of_one_sdist_give_byte_identical_wheels(locked_copy, tmp_path):
    repository = shutil.copytree(locked_copy, tmp_path / "monorepo", symlinks=True)
    wheels = {}
    for attempt in ("first", "second"):
        if wheels:
            # Zip times have a resolution of two seconds: a backend stamping the build time
            # would now write another one.
            time.sleep(2.1)
        invoke(repository, "build-wheels", "--service", "user", "--clean")
        (wheel,) = (repository / "wheelhouse").glob("wheelpipe_fixture_setuptools_sdist-*.whl")
        wheels[attempt] = wheel.read_bytes()
    assert wheels["first"] == wheels["second"]


def test_a_build_requirement_missing_from_the_build_lock_is_named_and_nothing_is_written(locked_copy, tmp_path):
    repository = shutil.copytree(locked_copy, tmp_path / "monorepo", symlinks=True)
    lock = repository / "requirements/build.txt"
    text = lock.read_text()
    pins = parse_pins(lock)
    # Drop the setuptools block (its line, its hashes and its `# via` notes): only the
    # setuptools sdist needs it, where hatchling builds the first-party packages too.
    lines = text.splitlines(keepends=True)
    start = pins["setuptools"].line - 1
    end = start + 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    lock.write_text("".join(lines[:start] + lines[end:]))
    result = invoke(repository, "build-wheels", "--service", "user", check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: requirements/build.txt: wheelpipe-fixture-setuptools-sdist==0.2.0 needs to build setuptools>=68, but the build lock does not pin it; run `invoke lock`"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert not (repository / "wheelhouse").exists()


def test_a_new_build_lock_rebuilds_the_wheels_built_from_sdists_and_nothing_else(locked_copy, tmp_path):
    """Every sdist builds in an environment of the whole build lock: a wheel built in another
    is what a clean build would no longer give, so verify names it and build-wheels rebuilds it."""
    repository = shutil.copytree(locked_copy, tmp_path / "monorepo", symlinks=True)
    invoke(repository, "build-wheels")
    before = {w["name"]: w for w in json.loads((repository / "wheelhouse/manifest.json").read_text())["wheels"]}
    current = parse_pins(repository / "requirements/build.txt")["setuptools"].version
    other = "80.9.0" if current != "80.9.0" else "80.8.0"
    invoke(repository, "lock", "--upgrade-package", f"setuptools=={other}")
    assert parse_pins(repository / "requirements/build.txt")["setuptools"].version == other

    stale = invoke(repository, "verify-wheelhouse", check=False)
    assert stale.returncode == 1 and "Traceback" not in stale.stderr, stale.stderr
    assert [line for line in stale.stderr.splitlines() if line.startswith("error:")] == [
        f"error: wheelhouse/install/user.txt: stale: the wheel in wheelhouse/manifest.json of {HATCHLING_SDIST}==0.1.0 was built from its sdist "
        "with another requirements/build.txt than the current one; run `invoke build-wheels`"
    ], stale.stderr

    rebuilt = invoke(repository, "build-wheels")
    assert sorted(re.findall(r"building (\S+) from its sdist", rebuilt.stderr)) == [f"{HATCHLING_SDIST}==0.1.0", f"{SETUPTOOLS_SDIST}==0.2.0"], rebuilt.stderr
    after = {w["name"]: w for w in json.loads((repository / "wheelhouse/manifest.json").read_text())["wheels"]}
    now = environment_digest(parse_pins(repository / "requirements/build.txt"))
    for name in (HATCHLING_SDIST, SETUPTOOLS_SDIST):
        assert before[name]["origin"]["build_environment"] != now == after[name]["origin"]["build_environment"]
    unchanged = set(before) - {HATCHLING_SDIST, SETUPTOOLS_SDIST}
    assert {n: after[n]["sha256"] for n in unchanged} == {n: before[n]["sha256"] for n in unchanged}
    invoke(repository, "verify-wheelhouse")
    assert "nothing to build" in invoke(repository, "build-wheels").stderr
