"""A first-party package with a C extension (tests/packages/cext_first_party: a small monorepo
whose shared/native is a setuptools package compiling one module, used by services/checksum).

Its wheel is built where the target's interpreter is (this host, CPython 3.11 on bookworm,
when the target is that; the target's builder container otherwise), checked with auditwheel
against the target's manylinux policy and tagged for the target's platform; two clean builds
from clones at different paths are byte-identical; the package's own tests import the
compiled module from the built wheel under `invoke test`; the service's install manifest
installs it offline. An extension linking a library outside the policy is one line, and
nothing is written.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from monorepo import ROOT, build_step_containers, commit_all, error_lines, git, install_offline, invoke, own_temp, retarget, run_from_wheel, unavailable
from packaging.utils import parse_wheel_filename

from wheelpipe.build.compiled import audit
from wheelpipe.build.runner import SDIST_BUILD_LABEL
from wheelpipe.errors import WheelhouseError
from wheelpipe.target import Target, host_glibc

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "packages" / "cext_first_party"
NATIVE = "shared/native (wheelpipe-fixture-native)"
WHEEL = "wheelpipe_fixture_native-0.1.0-cp311-cp311-manylinux_2_36_x86_64.whl"
TARGET = Target("3.11", "cp", "cp311", "manylinux_2_36_x86_64")
TRIXIE = ("3.13", "cp313", "manylinux_2_41_x86_64")
TRIXIE_WHEEL = "wheelpipe_fixture_native-0.1.0-cp313-cp313-manylinux_2_41_x86_64.whl"
RUNTIME_BASE = "local/python:3.13-slim-trixie"
BUILDER = "local/python-builder:3.13-slim-trixie"
MISSING_BUILDER = "wheelpipe-test/no-such-builder:1"
AUDIT = re.compile(r"^\s+\$ \S+ -m auditwheel show --json (\S+)$", re.M)


def this_host() -> str:
    glibc = host_glibc()
    assert glibc is not None  # these tests build on a glibc host
    return f"CPython {sys.version_info.major}.{sys.version_info.minor} on {platform.machine()} (glibc {glibc[0]}.{glibc[1]})"


def native_wheel(repository: Path) -> Path:
    (wheel,) = (repository / "wheelhouse").glob("wheelpipe_fixture_native-*.whl")
    return wheel


def wheelhouse_state(repository: Path) -> tuple[str, list[str]]:
    """Where the wheelhouse points and every generation under the store: a refused build changes neither."""
    return os.readlink(repository / "wheelhouse"), sorted(p.name for p in (repository / ".wheelhouse").iterdir() if p.name.startswith(("gen-", "partial-")))


def clone(repository: Path, destination: Path) -> Path:
    """A clean clone of the repository's commit: no wheelhouse, no build output."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(repository), str(destination)], check=True, capture_output=True)
    return destination


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture monorepo, committed and locked once."""
    repository = Path(shutil.copytree(FIXTURE, tmp_path_factory.mktemp("cext") / "monorepo"))
    git(repository, "init", "-q", "-b", "main")
    commit_all(repository, "a monorepo with a compiled shared package")
    # Its tooling lock starts from the tooling these tests run in (the lock keeps pins it is
    # given): `invoke test` below runs in this venv, which must match it, whatever the index
    # released since.
    (repository / "requirements").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "requirements" / "dev.txt", repository / "requirements" / "dev.txt")
    invoke(repository, "lock")
    commit_all(repository, "lock")
    return repository


@pytest.fixture(scope="module")
def built(locked: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A clone of the locked monorepo with its wheelhouse built once, verbosely."""
    repository = clone(locked, tmp_path_factory.mktemp("cext-built") / "monorepo")
    return repository, invoke(repository, "build-wheels", "--verbose")


@pytest.fixture
def built_copy(built: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> Path:
    return Path(shutil.copytree(built[0], tmp_path / "monorepo", symlinks=True))


def test_the_extensions_wheel_is_checked_by_auditwheel_and_tagged_for_the_manylinux_target(built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    repository, result = built
    wheel = native_wheel(repository)
    assert wheel.name == WHEEL
    assert parse_wheel_filename(wheel.name)[3] <= TARGET.accepts()
    assert f"building {NATIVE} with its compiled code on this host ({this_host()}, as the target)" in result.stderr
    # auditwheel analysed the wheel the backend built (tagged linux_x86_64), and only that one:
    # the service's pure wheel is left as its backend made it.
    assert [Path(path).name for path in AUDIT.findall(result.stderr)] == ["wheelpipe_fixture_native-0.1.0-cp311-cp311-linux_x86_64.whl"]
    assert (repository / "wheelhouse/checksum_service-0.1.0-py3-none-any.whl").is_file()

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        wheel_file = archive.read("wheelpipe_fixture_native-0.1.0.dist-info/WHEEL").decode()
        record = list(csv.reader(io.StringIO(archive.read("wheelpipe_fixture_native-0.1.0.dist-info/RECORD").decode())))
        # RECORD still vouches for every file, the rewritten WHEEL included.
        for path, digest, size in record:
            if path.endswith("/RECORD"):
                continue
            data = archive.read(path)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode() and int(size) == len(data), path
        (shared_object,) = [n for n in names if n.endswith(".so")]
        binary = archive.read(shared_object)
        stamps = {info.date_time for info in archive.infolist()}
    assert sorted(path for path, _, _ in record) == sorted(names)
    assert [line for line in wheel_file.splitlines() if line.startswith("Tag:")] == ["Tag: cp311-cp311-manylinux_2_36_x86_64"]
    assert "Root-Is-Purelib: false" in wheel_file
    # The compiler recorded the fixed /build, never the temporary directory it ran in; the
    # staged copy holds the package at its place in the repository (shared/native).
    assert b"/build/source/shared/native" in binary and b"wheelpipe-build-" not in binary
    assert len(stamps) == 1  # normalized: one time stamp for every entry

    entry = next(w for w in json.loads((repository / "wheelhouse/manifest.json").read_text())["wheels"] if w["file"] == WHEEL)
    assert entry["origin"]["kind"] == "built" and entry["origin"]["build_backend"].startswith("setuptools==") and entry["services"] == ["checksum"]
    invoke(repository, "verify-wheelhouse")
    again = invoke(repository, "build-wheels", "--verbose")
    assert "wheelhouse is up to date: nothing to build, nothing to download" in again.stderr and not AUDIT.findall(again.stderr)


def test_clean_builds_from_two_clones_at_different_paths_give_byte_identical_extension_wheels(locked: Path, built: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    first, _ = built
    second = clone(locked, tmp_path / "elsewhere" / "deeper" / "monorepo")
    invoke(second, "build-wheels")
    assert native_wheel(second).read_bytes() == native_wheel(first).read_bytes()


def test_the_packages_own_tests_import_the_compiled_module_from_the_built_wheel_under_invoke_test(built_copy: Path) -> None:
    tested = invoke(built_copy, "test", "-v")
    assert "4 passed" in tested.stdout, tested.stdout
    # pytest-xdist's verbose line: "[gw0] [ 25%] PASSED <file>::<test>".
    assert re.search(r"PASSED \S+::test_the_compiled_module_is_imported_from_the_built_wheel_not_from_src\b", tested.stdout), tested.stdout
    # Nothing was compiled in place: the only extension module is the one the wheel installed.
    modules = [p.relative_to(built_copy).parts[:3] for p in built_copy.rglob("_speedups*.so")]
    assert modules and all(parts == (".wheelhouse", "test-sites", parts[2]) for parts in modules), modules


def test_an_offline_install_of_the_service_manifest_imports_the_compiled_extension(built: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    repository, _ = built
    assert f"wheelpipe-fixture-native==0.1.0 \\\n    --hash=sha256:{hashlib.sha256(native_wheel(repository).read_bytes()).hexdigest()}" in (
        repository / "wheelhouse/install/checksum.txt"
    ).read_text()
    installed = install_offline(repository, "checksum", tmp_path / "venv")
    assert installed.returncode == 0, installed.stderr
    ran = subprocess.run([tmp_path / "venv/bin/checksum-service", "Wikipedia"], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "11e60398"
    imported = subprocess.run(
        [tmp_path / "venv/bin/python", "-c", "import wheelpipe_fixture_native._speedups as m; print(m.__file__)"], capture_output=True, text=True, check=True
    )
    assert Path(imported.stdout.strip()).is_relative_to(tmp_path / "venv")


def test_an_extension_linking_a_library_outside_the_manylinux_policy_is_one_line_and_nothing_is_written(built_copy: Path) -> None:
    # libcrypt.so.1 is on this host (libc6-dev), but no manylinux policy lists it.
    setup_py = built_copy / "shared/native/setup.py"
    setup_py.write_text(setup_py.read_text().replace('["src/wheelpipe_fixture_native/_speedups.c"])', '["src/wheelpipe_fixture_native/_speedups.c"], libraries=["crypt"])'))
    source = built_copy / "shared/native/src/wheelpipe_fixture_native/_speedups.c"
    source.write_text(source.read_text() + '\n#include <crypt.h>\nconst char *hashed(const char *phrase) { return crypt(phrase, "$1$salt$"); }\n')
    before = wheelhouse_state(built_copy)

    result = invoke(built_copy, "build-wheels", check=False)
    assert result.returncode == 1
    assert error_lines(result) == [
        f"error: {NATIVE}: wheelpipe_fixture_native-0.1.0-cp311-cp311-linux_x86_64.whl links libcrypt.so.1, a shared library outside the "
        "target's manylinux policy manylinux_2_36_x86_64 (a system it covers need not have it); link it statically or drop it "
        "(wheelpipe does not graft libraries into wheels, as auditwheel repair does)"
    ], result.stderr
    assert wheelhouse_state(built_copy) == before
    assert sorted(git(built_copy, "status", "--porcelain").splitlines()) == [" M shared/native/setup.py", " M shared/native/src/wheelpipe_fixture_native/_speedups.c"]


def test_a_pure_python_wheel_holding_a_prebuilt_binary_is_one_line_and_nothing_is_written(built_copy: Path) -> None:
    # A careless commit: a binary dropped into a hatchling package, which packs it into a
    # py3-none-any wheel that any platform would install unchecked.
    binary = shutil.which("true")
    assert binary is not None  # coreutils' true: any ELF file does
    shutil.copyfile(binary, built_copy / "services/checksum/src/checksum_service/_prebuilt.so")
    before = wheelhouse_state(built_copy)

    result = invoke(built_copy, "build-wheels", check=False)
    assert result.returncode == 1
    assert error_lines(result) == [
        "error: services/checksum (checksum-service): checksum_service-0.1.0-py3-none-any.whl says it is pure Python (Root-Is-Purelib: true, "
        "tags py3-none-any) but holds compiled code (checksum_service/_prebuilt.so); have its backend build a platform wheel, so that it "
        "is built and checked for the target"
    ], result.stderr
    assert wheelhouse_state(built_copy) == before


def test_glibc_symbol_versions_newer_than_the_targets_are_named(built_copy: Path) -> None:
    # No host or builder the pipeline accepts has a newer glibc than the target: this is the
    # analysis itself, on a real wheel whose extension calls dlopen (GLIBC_2.34 since libdl
    # moved into libc), judged for an older target.
    source = built_copy / "shared/native/src/wheelpipe_fixture_native/_speedups.c"
    source.write_text(source.read_text() + '\n#include <dlfcn.h>\nvoid *opened(const char *name) { return dlopen(name, RTLD_NOW); }\n')
    invoke(built_copy, "build-wheels")
    older = Target("3.11", "cp", "cp311", "manylinux_2_31_x86_64")
    with pytest.raises(WheelhouseError) as refused:
        audit(native_wheel(built_copy), older, NATIVE)
    assert str(refused.value) == (
        f"{NATIVE}: {WHEEL} uses glibc symbol versions up to GLIBC_2.34, newer than the target's glibc 2.31 (manylinux_2_31_x86_64); "
        "build it where the glibc is the target's"
    )
    audit(native_wheel(built_copy), TARGET, NATIVE)  # the target's own policy allows it


# -- a target this host is not: the builder container ------------------------------------------


@pytest.fixture(scope="module")
def trixie_locked(locked: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture monorepo retargeted to Debian trixie's CPython 3.13, locked and committed."""
    repository = clone(locked, tmp_path_factory.mktemp("cext-trixie") / "monorepo")
    retarget(repository, *TRIXIE)
    invoke(repository, "lock")
    commit_all(repository, "target trixie")
    return repository


@pytest.fixture(scope="module")
def trixie_images(trixie_locked: Path, docker_base_image: str) -> None:
    """The target's base and builder images, made by the task its users run (a check when they exist)."""
    made = invoke(trixie_locked, "base-image", "--suite", "trixie", "--builder", check=False)
    if made.returncode != 0:
        unavailable(f"no builder image for trixie: `invoke base-image --suite trixie --builder` said: {error_lines(made) or made.stderr[-500:]}")


@pytest.fixture(scope="module")
def trixie_built(trixie_locked: Path, trixie_images: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    repository = clone(trixie_locked, tmp_path_factory.mktemp("cext-trixie-built") / "monorepo")
    return repository, invoke(repository, "build-wheels", "--verbose", env=own_temp(repository))


@pytest.mark.docker
def test_for_another_target_the_extension_is_built_in_the_builder_container_and_tagged_for_it(trixie_built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    repository, result = trixie_built
    assert f"building {NATIVE} with its compiled code in a throwaway container of the builder image {BUILDER} (this host is {this_host()})" in result.stderr
    runs = [line for line in result.stderr.splitlines() if line.strip().startswith("$ docker run") and SDIST_BUILD_LABEL in line]
    assert len(runs) == 2, result.stderr  # the build environment, then the backend's build_wheel hook
    assert all("--rm --network none" in line and f"--user {os.getuid()}:{os.getgid()}" in line and ":/build:rw" in line for line in runs)
    # The work directory each step mounts lies in the command's TMPDIR: build_step_containers finds them.
    assert all(f"--volume {own_temp(repository)['TMPDIR']}/" in line for line in runs), runs
    assert [Path(path).name for path in AUDIT.findall(result.stderr)] == ["wheelpipe_fixture_native-0.1.0-cp313-cp313-linux_x86_64.whl"]
    assert native_wheel(repository).name == TRIXIE_WHEEL
    assert build_step_containers(repository) == []
    invoke(repository, "verify-wheelhouse")

    # It runs in the target's runtime base, with no network and no compiler there.
    printed = run_from_wheel(repository, TRIXIE_WHEEL, RUNTIME_BASE, 'import wheelpipe_fixture_native as m; print(m.compiled_for(), m.checksum_text("Wikipedia"))')
    compiled_for, checksum = printed.split()
    assert compiled_for.startswith("3.13.") and checksum == "11e60398"


@pytest.mark.docker
def test_builds_in_the_builder_from_clones_at_different_paths_give_byte_identical_extension_wheels(trixie_locked: Path, trixie_built: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    first, _ = trixie_built
    second = clone(trixie_locked, tmp_path / "elsewhere" / "monorepo")
    invoke(second, "build-wheels")
    assert native_wheel(second).read_bytes() == native_wheel(first).read_bytes()




# Another target's builder image missing: what the target is, the suite whose builder it
# needs, and how `invoke base-image` is told the architecture when it is not this host's.
MISSING_BUILDER_CASES = {
    "trixie": (TRIXIE, "trixie", ""),
    "aarch64": (("3.11", "cp311", "manylinux_2_36_aarch64"), "bookworm", " --arch arm64"),
}


@pytest.mark.docker
@pytest.mark.parametrize("case", list(MISSING_BUILDER_CASES))
def test_for_another_target_without_its_builder_image_the_build_is_one_line_naming_the_command_and_writes_nothing(locked: Path, tmp_path: Path, case: str) -> None:
    (python_version, abi, platform_tag), suite, arch = MISSING_BUILDER_CASES[case]
    repository = clone(locked, tmp_path / "monorepo")
    retarget(repository, python_version, abi, platform_tag)
    invoke(repository, "lock")
    commit_all(repository, f"target {case}")
    result = invoke(repository, "build-wheels", check=False, env={"INVOKE_IMAGE_BUILDER": MISSING_BUILDER, **own_temp(repository)})
    assert result.returncode == 1
    assert error_lines(result) == [
        f"error: {NATIVE}: building it with its compiled code needs CPython {python_version} on {platform_tag}; this host is {this_host()} "
        f"and the builder image {MISSING_BUILDER} does not exist: run `invoke base-image --suite {suite} --builder{arch} --tag {MISSING_BUILDER}`"
    ], result.stderr
    assert not (repository / "wheelhouse").exists()
    assert not list((repository / ".wheelhouse").glob("*/*.whl"))
    assert git(repository, "status", "--porcelain") == ""
    assert build_step_containers(repository) == []
