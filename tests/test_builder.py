"""An sdist-only dependency with a C extension, built for a target this host is not: in a
throwaway container of the target's builder image (`invoke base-image --builder`), never on
the host and never in a runtime image; on the host when the host is the target; and one
line when neither is possible.

This host runs CPython 3.11 (bookworm); the copy below targets Debian trixie's CPython 3.13
on manylinux_2_41_x86_64. The C extension's wheel names the interpreter that compiled it
(cp313-cp313), so a build by the wrong one would show, and, once auditwheel finds it within
the target's manylinux policy, the target's platform (manylinux_2_41_x86_64, where the
backend wrote linux_x86_64). Its sdist is served by a real index (pypiserver on loopback)
that the copy names as an extra index, beside a later version that links a library no
manylinux policy allows.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import (
    build_step_containers,
    commit_all,
    copy_repository,
    error_lines,
    git,
    install_offline,
    invoke,
    own_temp,
    package_index,
    retarget,
    run_from_wheel,
    unavailable,
)
from packaging.utils import parse_wheel_filename

from wheelpipe import load_repository
from wheelpipe.baseimage import BASE_ID_LABEL, ROLE_LABEL, check_matches_target
from wheelpipe.build.runner import SDIST_BUILD_LABEL
from wheelpipe.docker import Docker
from wheelpipe.errors import TargetError
from wheelpipe.target import host_glibc

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PACKAGES = Path(__file__).parent / "packages"
CEXT = "wheelpipe-fixture-cext"
TRIXIE = ("3.13", "cp313", "manylinux_2_41_x86_64")
RUNTIME_BASE = "local/python:3.13-slim-trixie"
BUILDER = "local/python-builder:3.13-slim-trixie"
MISSING_BUILDER = "wheelpipe-test/no-such-builder:1"
OUTSIDE_POLICY = "0.2.0"
# A step of build-wheels --verbose: auditwheel's analysis of a wheel (its path).
AUDIT = re.compile(r"^\s+\$ \S+ -m auditwheel show --json (\S+)$", re.M)


def this_host() -> str:
    glibc = host_glibc()
    assert glibc is not None  # these tests build on a glibc host
    return f"CPython {sys.version_info.major}.{sys.version_info.minor} on {platform.machine()} (glibc {glibc[0]}.{glibc[1]})"


def cext_wheel(repository: Path) -> Path:
    (wheel,) = (repository / "wheelhouse").glob("wheelpipe_fixture_cext-*.whl")
    return wheel


def depend_on_cext(repository: Path, index_url: str, version: str = "0.1.0") -> None:
    root = repository / "pyproject.toml"
    root.write_text(root.read_text() + f'\n[tool.wheelpipe.index]\nextra-urls = ["{index_url}"]\n')
    replace_once(repository / "services/user/pyproject.toml", '"flask>=3.0",', f'"flask>=3.0",\n    "{CEXT}=={version}",')


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected {old!r} once"
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def cext_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An index holding only sdists of the C extension, 0.1.0 and OUTSIDE_POLICY; its simple URL."""
    root = tmp_path_factory.mktemp("cext-index")
    # A copy: setuptools writes egg-info next to the sources it builds.
    source = shutil.copytree(PACKAGES / "sdist_only_cext", root / "src")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", root / "packages", source], check=True, capture_output=True)
    # The next version links libcrypt.so.1: on this host (libc6-dev), in no manylinux policy.
    linking = shutil.copytree(PACKAGES / "sdist_only_cext", root / "src-linking")
    replace_once(linking / "pyproject.toml", 'version = "0.1.0"', f'version = "{OUTSIDE_POLICY}"')
    replace_once(linking / "setup.py", '["src/wheelpipe_fixture_cext/_native.c"])', '["src/wheelpipe_fixture_cext/_native.c"], libraries=["crypt"])')
    native = linking / "src/wheelpipe_fixture_cext/_native.c"
    native.write_text(native.read_text() + '\n#include <crypt.h>\nconst char *hashed(const char *phrase) { return crypt(phrase, "$1$salt$"); }\n')
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", root / "packages", linking], check=True, capture_output=True)
    with package_index(root / "packages", root / "server.log") as port:
        yield f"http://127.0.0.1:{port}/simple/"


@pytest.fixture(scope="module")
def trixie_locked(tmp_path_factory: pytest.TempPathFactory, cext_index: str) -> Path:
    """The monorepo retargeted to trixie's CPython 3.13, user depending on the C extension, locked once."""
    repository = copy_repository(tmp_path_factory.mktemp("trixie") / "monorepo")
    retarget(repository, *TRIXIE)
    depend_on_cext(repository, cext_index)
    invoke(repository, "lock")
    commit_all(repository, "target trixie; user depends on a C extension published only as an sdist")
    return repository


@pytest.fixture(scope="module")
def trixie_images(trixie_locked: Path, docker_base_image: str) -> None:
    """The target's base and builder images, made by the task its users run (a check when
    they exist: CI's .ci/run makes them before the tests)."""
    made = invoke(trixie_locked, "base-image", "--suite", "trixie", "--builder", check=False)
    if made.returncode != 0:
        unavailable(f"no builder image for trixie: `invoke base-image --suite trixie --builder` said: {error_lines(made.stderr) or made.stderr[-500:]}")


@pytest.fixture(scope="module")
def trixie_built(trixie_locked: Path, trixie_images: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A copy of the locked repository with its wheelhouse built once, verbosely."""
    repository = shutil.copytree(trixie_locked, tmp_path_factory.mktemp("trixie-built") / "monorepo", symlinks=True)
    return repository, invoke(repository, "build-wheels", "--verbose", env=own_temp(repository))


def test_base_image_builder_makes_a_builder_from_the_targets_base_and_only_the_builder_has_a_compiler(trixie_locked: Path, trixie_images: None) -> None:
    labels = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", BUILDER], capture_output=True, text=True, check=True)
    base_id = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", RUNTIME_BASE], capture_output=True, text=True, check=True)
    assert json.loads(labels.stdout) == {ROLE_LABEL: "builder", BASE_ID_LABEL: base_id.stdout.strip()}
    probe = "command -v gcc && test -f /usr/include/python3.13/Python.h && echo compiles"
    in_builder = subprocess.run(["docker", "run", "--rm", "--network", "none", BUILDER, "sh", "-c", probe], capture_output=True, text=True, check=False)
    in_base = subprocess.run(["docker", "run", "--rm", "--network", "none", RUNTIME_BASE, "sh", "-c", probe], capture_output=True, text=True, check=False)
    assert in_builder.returncode == 0 and "compiles" in in_builder.stdout, in_builder.stderr
    assert in_base.returncode != 0 and "compiles" not in in_base.stdout

    again = invoke(trixie_locked, "base-image", "--suite", "trixie", "--builder")
    assert f"{BUILDER} already exists, made from {RUNTIME_BASE}, and builds for the target" in again.stderr
    assert "docker build" not in again.stderr and "debootstrap" not in again.stderr


def test_a_builder_suite_whose_glibc_is_not_the_targets_is_refused_before_anything_is_built(repo_copy: Path) -> None:
    retarget(repo_copy, "3.13", "cp313", "manylinux_2_36_x86_64")
    result = invoke(repo_copy, "base-image", "--suite", "trixie", "--builder", "--tag", "wheelpipe-test/never-built-builder:1", check=False)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        "error: Debian trixie has glibc 2.41, but a builder for the target CPython 3.13 on manylinux_2_36_x86_64 needs glibc 2.36 "
        "(what it compiles must load there); choose a matching suite"
    ], result.stderr
    assert subprocess.run(["docker", "image", "inspect", "wheelpipe-test/never-built-builder:1"], capture_output=True, check=False).returncode != 0


def test_a_builder_image_is_refused_as_the_base_of_a_runtime_image(trixie_locked: Path, trixie_images: None, tmp_path: Path) -> None:
    repository = shutil.copytree(trixie_locked, tmp_path / "monorepo", symlinks=True)
    prefix = "wheelpipe-test-builder-as-base/"
    result = invoke(repository, "image", "--service", "order", "--prefix", prefix, "--base-image", BUILDER, check=False)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: base image {BUILDER} is a builder image (it carries a compiler and headers); runtime images start from the base image it was made from"
    ], result.stderr
    assert not (repository / "wheelhouse").exists()
    assert subprocess.run(["docker", "image", "inspect", f"{prefix}order:0.1.0"], capture_output=True, check=False).returncode != 0
    # The same check passes the base the builder was made from.
    target = load_repository(repository).target
    assert check_matches_target(Docker(), RUNTIME_BASE, target)["python"] == "3.13"
    with pytest.raises(TargetError):
        check_matches_target(Docker(), BUILDER, target)


def test_an_sdist_only_c_extension_for_another_target_is_built_in_a_throwaway_builder_container(trixie_built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    repository, built = trixie_built
    assert f"building {CEXT}==0.1.0 from its sdist in a throwaway container of the builder image {BUILDER} (this host is {this_host()})" in built.stderr
    runs = [line.strip() for line in built.stderr.splitlines() if line.strip().startswith("$ docker run") and BUILDER in line and SDIST_BUILD_LABEL in line]
    assert len(runs) == 3, built.stderr  # the build environment, then the backend's two hooks
    assert all("--rm --network none" in line and f"--user {os.getuid()}:{os.getgid()}" in line and ":/build:rw" in line for line in runs)
    # The work directory each step mounts lies in the command's TMPDIR: build_step_containers finds them.
    assert all(f"--volume {own_temp(repository)['TMPDIR']}/" in line for line in runs), runs

    wheel = cext_wheel(repository)
    # Compiled by trixie's CPython 3.13, found within the target's policy by auditwheel on this host, tagged for the target.
    assert [Path(path).name for path in AUDIT.findall(built.stderr)] == ["wheelpipe_fixture_cext-0.1.0-cp313-cp313-linux_x86_64.whl"]
    assert wheel.name == "wheelpipe_fixture_cext-0.1.0-cp313-cp313-manylinux_2_41_x86_64.whl"
    assert {str(tag) for tag in parse_wheel_filename(wheel.name)[3]} == {"cp313-cp313-manylinux_2_41_x86_64"}
    with zipfile.ZipFile(wheel) as archive:
        assert "Tag: cp313-cp313-manylinux_2_41_x86_64" in archive.read("wheelpipe_fixture_cext-0.1.0.dist-info/WHEEL").decode().splitlines()
    assert wheel.stat().st_uid == os.getuid()
    manifest = json.loads((repository / "wheelhouse/manifest.json").read_text())
    entry = next(w for w in manifest["wheels"] if w["name"] == CEXT)
    assert entry["origin"]["kind"] == "built-from-sdist" and entry["services"] == ["user"]
    assert build_step_containers(repository) == []
    invoke(repository, "verify-wheelhouse")


def test_the_wheel_built_in_the_builder_imports_in_the_targets_runtime_base_with_no_network(trixie_built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    repository, _ = trixie_built
    printed = run_from_wheel(repository, cext_wheel(repository).name, RUNTIME_BASE, "import platform, wheelpipe_fixture_cext as m; print(m.compiled_for(), platform.python_version())")
    compiled_for, running = printed.split()
    assert compiled_for.startswith("3.13.") and compiled_for == running


def test_two_builds_in_the_builder_from_different_paths_give_byte_identical_wheels(trixie_locked: Path, trixie_built: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    first, _ = trixie_built
    second = shutil.copytree(trixie_locked, tmp_path / "elsewhere" / "monorepo", symlinks=True)
    invoke(second, "build-wheels")
    assert cext_wheel(second).read_bytes() == cext_wheel(first).read_bytes()


@pytest.mark.parametrize("case", ["no builder image", "no engine", "a builder for another python"])
def test_without_a_matching_host_or_builder_image_the_build_stops_with_one_line_and_writes_nothing(trixie_locked: Path, docker_base_image: str, tmp_path: Path, case: str) -> None:
    repository = shutil.copytree(trixie_locked, tmp_path / "monorepo", symlinks=True)
    need = f"error: {CEXT}==0.1.0: building it from its sdist needs CPython 3.13 on manylinux_2_41_x86_64; this host is {this_host()} and "
    env, expected = {
        "no builder image": (
            {"INVOKE_IMAGE_BUILDER": MISSING_BUILDER},
            f"{need}the builder image {MISSING_BUILDER} does not exist: run `invoke base-image --suite trixie --builder --tag {MISSING_BUILDER}`",
        ),
        "no engine": (
            {"DOCKER_HOST": "unix:///nonexistent.sock"},
            f"{need}the builder image {BUILDER} cannot be run: cannot reach the Docker engine",
        ),
        "a builder for another python": (
            {"INVOKE_IMAGE_BUILDER": docker_base_image},
            f"error: {CEXT}==0.1.0: builder image {docker_base_image} does not match the target CPython 3.13 on manylinux_2_41_x86_64: Python 3.11 (target wants 3.13)",
        ),
    }[case]
    result = invoke(repository, "build-wheels", check=False, env={**env, **own_temp(repository)})
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    assert not (repository / "wheelhouse").exists()
    assert not list((repository / ".wheelhouse").glob("*/*.whl"))
    assert git(repository, "status", "--porcelain") == ""
    assert build_step_containers(repository) == []


def test_a_host_matching_the_target_builds_the_extension_here_without_any_builder(cext_index: str, tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")  # the target is this host's CPython 3.11
    depend_on_cext(repository, cext_index)
    invoke(repository, "lock")
    commit_all(repository, "user depends on a C extension published only as an sdist")
    built = invoke(repository, "build-wheels", "--service", "user", "--verbose", env={"INVOKE_IMAGE_BUILDER": MISSING_BUILDER})
    assert f"building {CEXT}==0.1.0 from its sdist on this host ({this_host()}, as the target)" in built.stderr
    assert "$ docker" not in built.stderr
    assert cext_wheel(repository).name == "wheelpipe_fixture_cext-0.1.0-cp311-cp311-manylinux_2_36_x86_64.whl"

    installed = install_offline(repository, "user", tmp_path / "venv")
    assert installed.returncode == 0, installed.stderr
    imported = subprocess.run([tmp_path / "venv/bin/python", "-c", "import wheelpipe_fixture_cext as m; print(m.compiled_for())"], capture_output=True, text=True, check=True)
    assert imported.stdout.startswith("3.11.")


def test_an_sdist_whose_extension_links_a_library_outside_the_manylinux_policy_is_one_line_and_nothing_is_written(cext_index: str, tmp_path: Path) -> None:
    repository = copy_repository(tmp_path / "monorepo")  # the target is this host's CPython 3.11
    depend_on_cext(repository, cext_index, OUTSIDE_POLICY)
    invoke(repository, "lock")
    commit_all(repository, "user depends on a C extension that links libcrypt")

    result = invoke(repository, "build-wheels", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_lines(result.stderr) == [
        f"error: {CEXT}=={OUTSIDE_POLICY}: wheelpipe_fixture_cext-{OUTSIDE_POLICY}-cp311-cp311-linux_x86_64.whl links libcrypt.so.1, a shared library "
        "outside the target's manylinux policy manylinux_2_36_x86_64 (a system it covers need not have it); link it statically or drop it "
        "(wheelpipe does not graft libraries into wheels, as auditwheel repair does)"
    ], result.stderr
    assert not (repository / "wheelhouse").exists()
    assert not list((repository / ".wheelhouse").glob("*/*.whl"))
    assert git(repository, "status", "--porcelain") == ""
