"""Dependencies published only as sdists: each one's own build requirements are locked with
hashes (requirements/sdists/<name>-<version>.txt), each is built into a wheel by build-wheels
with exactly those, reproducibly, and never at install time; an old sdist (its setup.py imports
pkg_resources) builds with the old setuptools it names.

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
from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import commit_all, copy_repository, install_offline, invoke, package_index
from packaging.version import Version

from wheelpipe.build.environment import environment_digest
from wheelpipe.fsutil import sha256_file
from wheelpipe.lockfile import parse_pins

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

PACKAGES = Path(__file__).parent / "packages"
HATCHLING_SDIST = "wheelpipe-fixture-sdist-only"
SETUPTOOLS_SDIST = "wheelpipe-fixture-setuptools-sdist"
LEGACY_SDIST = "wheelpipe-fixture-legacy-sdist"
SDIST_LOCKS = {
    HATCHLING_SDIST: "requirements/sdists/wheelpipe-fixture-sdist-only-0.1.0.txt",
    SETUPTOOLS_SDIST: "requirements/sdists/wheelpipe-fixture-setuptools-sdist-0.2.0.txt",
    LEGACY_SDIST: "requirements/sdists/wheelpipe-fixture-legacy-sdist-0.3.0.txt",
}


@pytest.fixture(scope="module")
def sdist_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An index holding only the two fixture sdists; its simple URL and directory."""
    root = tmp_path_factory.mktemp("sdist-index")
    packages = root / "packages"
    for fixture in ("sdist_only", "sdist_only_setuptools", "sdist_only_legacy"):
        # A copy: setuptools writes egg-info next to the sources it builds.
        source = shutil.copytree(PACKAGES / fixture, root / "src" / fixture)
        # The legacy one only with the old setuptools it names, installed by build in isolation.
        isolation = [] if fixture == "sdist_only_legacy" else ["--no-isolation"]
        subprocess.run([sys.executable, "-m", "build", "--sdist", *isolation, "--outdir", packages, source], check=True, capture_output=True)
    with package_index(packages, root / "server.log") as port:
        yield f"http://127.0.0.1:{port}/simple/", packages


@pytest.fixture(scope="module")
def locked_copy(tmp_path_factory: pytest.TempPathFactory, sdist_index: tuple[str, Path]) -> Path:
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


def test_lock_pins_the_sdists_by_hash_and_locks_their_build_requirements(locked_copy: Path, sdist_index: tuple[str, Path]) -> None:
    url, packages = sdist_index
    pins = parse_pins(locked_copy / "requirements/user.txt")
    for name in (HATCHLING_SDIST, SETUPTOOLS_SDIST):
        (sdist,) = packages.glob(f"{name.replace('-', '_')}-*.tar.gz")
        assert pins[name].hashes == {sha256_file(sdist)}
    # Each sdist's own [build-system] requires, in its own build lock; the first-party
    # backends' build lock holds none of them.
    hatchling_in = (locked_copy / SDIST_LOCKS[HATCHLING_SDIST]).with_suffix(".in").read_text().splitlines()
    setuptools_in = (locked_copy / SDIST_LOCKS[SETUPTOOLS_SDIST]).with_suffix(".in").read_text().splitlines()
    assert "hatchling>=1.26" in hatchling_in and "setuptools>=68" not in hatchling_in
    assert "setuptools>=68" in setuptools_in and "hatchling>=1.26" not in setuptools_in
    assert "setuptools" not in parse_pins(locked_copy / "requirements/build.txt")
    assert "hatchling" in parse_pins(locked_copy / SDIST_LOCKS[HATCHLING_SDIST])
    build_lock = parse_pins(locked_copy / SDIST_LOCKS[SETUPTOOLS_SDIST])
    assert "setuptools" in build_lock and "hatchling" not in build_lock
    assert all(pin.hashes for pin in build_lock.values())
    for path in (p for p in (locked_copy / "requirements").rglob("*") if p.is_file()):
        assert url not in path.read_text() and "127.0.0.1" not in path.read_text(), path.name
    invoke(locked_copy, "lock", "--check")


def test_sdist_only_dependencies_are_built_into_wheels_and_install_offline(locked_copy: Path, tmp_path: Path) -> None:
    repository = shutil.copytree(locked_copy, tmp_path / "monorepo", symlinks=True)
    built = invoke(repository, "build-wheels", "--service", "user", "--verbose")
    # The build environment comes from the build lock alone: no pip resolves or downloads.
    assert " pip download" not in built.stderr and "piptools" not in built.stderr
    manifest = json.loads((repository / "wheelhouse/manifest.json").read_text())
    by_name = {w["name"]: w for w in manifest["wheels"]}
    for name in (HATCHLING_SDIST, SETUPTOOLS_SDIST):
        origin = by_name[name]["origin"]
        assert origin["kind"] == "built-from-sdist"
        assert origin["build_lock"] == SDIST_LOCKS[name]
        # The environment it was built in: its own build lock's pins and hashes, as they are now.
        assert origin["build_environment"] == environment_digest(parse_pins(repository / SDIST_LOCKS[name]))
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


def test_two_builds_of_one_sdist_give_byte_identical_wheels(locked_copy: Path, tmp_path: Path) -> None:
    repository = shutil.copytree(locked_copy, tmp_path / "monorepo", symlinks=True)
    wheels: dict[str, bytes] = {}
    for attempt in ("first", "second"):
        if wheels:
            # Zip times have a resolution of two seconds: a backend stamping the build time
            # would now write another one.
            time.sleep(2.1)
        invoke(repository, "build-wheels", "--service", "user", "--clean")
        (wheel,) = (repository / "wheelhouse").glob("wheelpipe_fixture_setuptools_sdist-*.whl")
        wheels[attempt] = wheel.read_bytes()
    assert wheels["first"] == wheels["second"]


def test_a_build_requirement_missing_from_the_build_lock_is_named_and_nothing_is_written(locked_copy: Path, tmp_path: Path) -> None:
    repository = shutil.copytree(locked_copy, tmp_path / "monorepo", symlinks=True)
    lock = repository / SDIST_LOCKS[SETUPTOOLS_SDIST]
    lines = lock.read_text().splitlines(keepends=True)
    # Drop the setuptools block: its line, its hashes and its `# via` notes.
    start, end = _pin_block(lines, parse_pins(lock)["setuptools"].line)
    lock.write_text("".join(lines[:start] + lines[end:]))
    result = invoke(repository, "build-wheels", "--service", "user", check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {SDIST_LOCKS[SETUPTOOLS_SDIST]}: wheelpipe-fixture-setuptools-sdist==0.2.0 needs to build setuptools>=68, but the build lock does not pin it; run `invoke lock`"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert not (repository / "wheelhouse").exists()


def _pin_block(lines: list[str], line: int) -> tuple[int, int]:
    """The lines (start, end) of a lock's pin at 1-based `line`: it, its hashes and its notes."""
    start = line - 1
    end = start + 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    return start, end


def test_a_new_sdist_build_lock_rebuilds_the_wheel_built_with_it_and_nothing_else(locked_copy: Path, tmp_path: Path) -> None:
    """Each sdist builds in an environment of its own build lock: a wheel built in another is
    what a clean build would no longer give, so verify names it and build-wheels rebuilds it;
    the other sdist's wheel, built with a lock that did not move, stays."""
    repository = shutil.copytree(locked_copy, tmp_path / "monorepo", symlinks=True)
    invoke(repository, "build-wheels")
    before = {w["name"]: w for w in json.loads((repository / "wheelhouse/manifest.json").read_text())["wheels"]}
    lock = repository / SDIST_LOCKS[SETUPTOOLS_SDIST]
    current = parse_pins(lock)["setuptools"].version
    other = "80.9.0" if current != "80.9.0" else "80.8.0"
    invoke(repository, "lock", "--upgrade-package", f"setuptools=={other}")
    assert parse_pins(lock)["setuptools"].version == other
    assert (repository / "requirements/build.txt").read_bytes() == (locked_copy / "requirements/build.txt").read_bytes()
    assert (repository / SDIST_LOCKS[HATCHLING_SDIST]).read_bytes() == (locked_copy / SDIST_LOCKS[HATCHLING_SDIST]).read_bytes()

    stale = invoke(repository, "verify-wheelhouse", check=False)
    assert stale.returncode == 1 and "Traceback" not in stale.stderr, stale.stderr
    assert [line for line in stale.stderr.splitlines() if line.startswith("error:")] == [
        f"error: wheelhouse/install/user.txt: stale: the wheel in wheelhouse/manifest.json of {SETUPTOOLS_SDIST}==0.2.0 was built from its sdist "
        f"with another build lock than the current {SDIST_LOCKS[SETUPTOOLS_SDIST]}; run `invoke build-wheels`"
    ], stale.stderr
    # Only the services whose locks pin that sdist are affected.
    commit_all(repository, "setuptools moved in one sdist's build lock")
    assert invoke(repository, "affected", "--since", "HEAD~1").stdout.split() == ["user"]

    rebuilt = invoke(repository, "build-wheels")
    assert re.findall(r"building (\S+) from its sdist", rebuilt.stderr) == [f"{SETUPTOOLS_SDIST}==0.2.0"], rebuilt.stderr
    after = {w["name"]: w for w in json.loads((repository / "wheelhouse/manifest.json").read_text())["wheels"]}
    now = environment_digest(parse_pins(lock))
    assert before[SETUPTOOLS_SDIST]["origin"]["build_environment"] != now == after[SETUPTOOLS_SDIST]["origin"]["build_environment"]
    unchanged = set(before) - {SETUPTOOLS_SDIST}
    assert {n: after[n]["sha256"] for n in unchanged} == {n: before[n]["sha256"] for n in unchanged}
    invoke(repository, "verify-wheelhouse")
    assert "nothing to build" in invoke(repository, "build-wheels").stderr


# -- an old sdist: its own old setuptools ----------------------------------------------------


@pytest.fixture(scope="module")
def legacy_copy(tmp_path_factory: pytest.TempPathFactory, sdist_index: tuple[str, Path]) -> Path:
    """The monorepo with order depending on the old sdist, locked once."""
    url, _ = sdist_index
    repository = copy_repository(tmp_path_factory.mktemp("legacy") / "monorepo")
    root = repository / "pyproject.toml"
    root.write_text(root.read_text() + f'\n[tool.wheelpipe.index]\nextra-urls = ["{url}"]\n')
    pyproject = repository / "services/order/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3.0",', f'"flask>=3.0",\n    "{LEGACY_SDIST}==0.3.0",'))
    invoke(repository, "lock")
    commit_all(repository, "order depends on an old sdist")
    return repository


def test_the_legacy_fixture_really_needs_pkg_resources_which_the_current_setuptools_lacks(sdist_index: tuple[str, Path], tmp_path: Path) -> None:
    """What makes the old sdist a test at all: built with the setuptools of today (the tooling's,
    no pkg_resources), its setup.py fails."""
    _, packages = sdist_index
    (sdist,) = packages.glob("wheelpipe_fixture_legacy_sdist-*.tar.gz")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--isolated", "-w", tmp_path, sdist], capture_output=True, text=True, check=False)
    assert built.returncode != 0 and "No module named 'pkg_resources'" in built.stdout + built.stderr


def test_an_old_sdist_builds_with_the_old_setuptools_its_own_build_lock_pins(legacy_copy: Path, tmp_path: Path) -> None:
    repository = shutil.copytree(legacy_copy, tmp_path / "monorepo", symlinks=True)
    label = SDIST_LOCKS[LEGACY_SDIST]
    wanted = (repository / label).with_suffix(".in").read_text().splitlines()
    # What its [build-system] names, and wheel, which setuptools before 70.1 asks for.
    assert "setuptools<70" in wanted and "wheel" in wanted
    pins = parse_pins(repository / label)
    assert Version(pins["setuptools"].version) < Version("70") and all(pin.hashes for pin in pins.values())
    invoke(repository, "lock", "--check")

    invoke(repository, "build-wheels", "--service", "order")
    (entry,) = [w for w in json.loads((repository / "wheelhouse/manifest.json").read_text())["wheels"] if w["name"] == LEGACY_SDIST]
    assert entry["origin"]["build_lock"] == label
    assert entry["origin"]["build_environment"] == environment_digest(pins)
    installed = install_offline(repository, "order", tmp_path / "venv")
    assert installed.returncode == 0, installed.stderr
    imported = subprocess.run([tmp_path / "venv/bin/python", "-c", "import wheelpipe_fixture_legacy_sdist as m; print(m.ORIGIN)"], capture_output=True, text=True, check=True)
    assert imported.stdout == "built from its sdist with an old setuptools\n"


def test_an_old_sdist_forced_onto_the_current_setuptools_fails_naming_the_pin(legacy_copy: Path, tmp_path: Path) -> None:
    """A hand edit that puts the setuptools of today into the old sdist's build lock (as one
    shared build lock would): one line naming the lock, the sdist's pin and what it needs."""
    repository = shutil.copytree(legacy_copy, tmp_path / "monorepo", symlinks=True)
    tooling = parse_pins(repository / "requirements/dev.txt")
    lock = repository / SDIST_LOCKS[LEGACY_SDIST]
    lines = lock.read_text().splitlines(keepends=True)
    start, end = _pin_block(lines, parse_pins(lock)["setuptools"].line)
    dev_lines = (repository / "requirements/dev.txt").read_text().splitlines(keepends=True)
    new_start, new_end = _pin_block(dev_lines, tooling["setuptools"].line)
    lock.write_text("".join(lines[:start] + dev_lines[new_start:new_end] + lines[end:]))
    current = tooling["setuptools"].version
    assert Version(current) >= Version("70")

    result = invoke(repository, "build-wheels", "--service", "order", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {SDIST_LOCKS[LEGACY_SDIST]}: {LEGACY_SDIST}==0.3.0 needs to build setuptools<70, but the build lock pins setuptools=={current}; run `invoke lock`"
    ]
    assert not (repository / "wheelhouse").exists()
    checked = invoke(repository, "lock", "--check", check=False)
    assert checked.returncode == 1 and f"- setuptools=={current}" in checked.stderr, checked.stderr


def test_upgrading_setuptools_to_todays_leaves_the_old_sdists_build_lock_on_the_one_it_needs(legacy_copy: Path, tmp_path: Path) -> None:
    """`--upgrade-package setuptools==<today's>` is for the locks that can take it: the old
    sdist's build lock keeps its setuptools<70 rather than failing the whole run."""
    repository = shutil.copytree(legacy_copy, tmp_path / "monorepo", symlinks=True)
    today = parse_pins(repository / "requirements/dev.txt")["setuptools"].version
    before = (repository / SDIST_LOCKS[LEGACY_SDIST]).read_bytes()
    invoke(repository, "lock", "--upgrade-package", f"setuptools=={today}")
    assert (repository / SDIST_LOCKS[LEGACY_SDIST]).read_bytes() == before
    assert Version(parse_pins(repository / SDIST_LOCKS[LEGACY_SDIST])["setuptools"].version) < Version("70")
    invoke(repository, "lock", "--check")
