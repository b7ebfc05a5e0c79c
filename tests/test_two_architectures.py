"""Two architectures from this x86_64 host: x86_64 natively, aarch64 emulated by
qemu-user-static (registered with binfmt_misc by `.ci/builders`, which also bootstraps the
arm64 base and builder images).

The emulated tests cover one service and one compiled wheel, each under qemu once: the
`checksum` HTTP service of tests/packages/cext_first_party and its shared package's C extension,
declared for manylinux_2_36_x86_64 and manylinux_2_36_aarch64. The wheelhouse and the images of
pure packages on several platforms, which need no emulation, are tests/test_targets.py's.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import commit_all, container_registry, copy_repository, git, invoke, two_platforms, unavailable

from wheelpipe import baseimage
from wheelpipe.target import Target

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.network]

FIXTURE = Path(__file__).parent / "packages" / "cext_first_party"
PLATFORMS = ["manylinux_2_36_x86_64", "manylinux_2_36_aarch64"]
ARM64_BUILDER = baseimage.builder_tag("bookworm", "aarch64")
# ELF's e_machine of each architecture, at byte 18 of the header (little-endian on both).
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=300)


def present(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


@pytest.fixture(scope="module")
def arm64_base(docker_base_image: str) -> str:
    """The arm64 base next to the x86_64 one (baseimage.base_for), and the arm64 builder: what
    `.ci/builders` bootstraps under qemu."""
    x86_64, aarch64 = (Target(python_version="3.11", implementation="cp", abi="cp311", platform=platform) for platform in PLATFORMS)
    arm64 = baseimage.base_for(docker_base_image, aarch64, (x86_64, aarch64))
    for image in (arm64, ARM64_BUILDER):
        if not present(image):
            unavailable(f"no {image}: run .ci/builders (it bootstraps the arm64 base and builder images with `invoke base-image --arch arm64 [--builder]`)")
    return arm64


@pytest.fixture(scope="module")
def two_architectures(tmp_path_factory: pytest.TempPathFactory, arm64_base: str) -> Path:
    """A copy of the fixture declaring x86_64 and aarch64, locked, committed, its wheelhouse built."""
    repository = copy_repository(tmp_path_factory.mktemp("two-architectures") / "repo", FIXTURE)
    two_platforms(repository, *PLATFORMS)
    invoke(repository, "lock")
    commit_all(repository, "x86_64 and aarch64")
    invoke(repository, "build-wheels")
    return repository


def native_wheels(repository: Path) -> dict[str, Path]:
    """The compiled first-party wheel of each architecture, by machine."""
    wheels = sorted((repository / "wheelhouse").glob("wheelpipe_fixture_native-*.whl"))
    return {machine: wheel for wheel in wheels for machine in ELF_MACHINE if wheel.name.endswith(f"_{machine}.whl")}


def elf_machine(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as archive:
        (library,) = [name for name in archive.namelist() if name.endswith(".so")]
        header = archive.read(library)[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


def test_the_compiled_wheel_is_built_for_aarch64_in_the_arm64_builder_under_qemu_and_is_byte_identical_from_another_clone(
    two_architectures: Path, tmp_path: Path,
) -> None:
    wheels = native_wheels(two_architectures)
    assert sorted(wheels) == ["aarch64", "x86_64"], wheels
    assert wheels["aarch64"].name == "wheelpipe_fixture_native-0.1.0-cp311-cp311-manylinux_2_36_aarch64.whl"
    for machine, wheel in wheels.items():
        assert elf_machine(wheel) == ELF_MACHINE[machine], f"{wheel.name} holds code for another machine"
    manifest = json.loads((two_architectures / "wheelhouse/manifest.json").read_text())
    # The service's own wheel is pure: one file for both.
    assert [w["file"] for w in manifest["wheels"] if w["name"] == "checksum-service"] == ["checksum_service-0.1.0-py3-none-any.whl"]
    for machine in ("x86_64", "aarch64"):
        pinned = (two_architectures / f"wheelhouse/install/{machine}/checksum.txt").read_text()
        assert hashlib.sha256(wheels[machine].read_bytes()).hexdigest() in pinned
    invoke(two_architectures, "verify-wheelhouse")

    clone = tmp_path / "elsewhere" / "clone"
    git(tmp_path, "clone", "-q", str(two_architectures), str(clone))
    result = invoke(clone, "build-wheels")
    assert "in a throwaway container of the builder image " + ARM64_BUILDER in result.stderr, result.stderr
    assert native_wheels(clone)["aarch64"].read_bytes() == wheels["aarch64"].read_bytes()


def remove_images(prefix: str) -> None:
    """Every tag and digest reference under `prefix` (this test's own), and nothing else."""
    listed = docker("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}", check=False).stdout.splitlines()
    for repository, tag, digest in (line.split(" ") for line in listed):
        if repository.startswith(prefix):
            docker("rmi", f"{repository}:{tag}" if tag != "<none>" else f"{repository}@{digest}", check=False)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A tag prefix of this test's own; every image tagged under it is removed afterwards."""
    prefix = f"wheelpipe-test-{uuid.uuid4().hex[:8]}/"
    yield prefix
    remove_images(prefix)


def test_the_arm64_image_of_one_service_runs_under_qemu_and_passes_its_import_and_health_checks(
    two_architectures: Path, docker_base_image: str, arm64_base: str, prefix: str,
) -> None:
    options = ("--prefix", prefix, "--base-image", docker_base_image)
    built = invoke(two_architectures, "image", "--service", "checksum", "--arch", "arm64", *options)
    tag = f"{prefix}checksum:0.1.0-arm64"
    assert f"building {tag} from {arm64_base} (network off during the build, aarch64 emulated by qemu)" in built.stderr, built.stderr
    assert "exactly those of wheelhouse/install/aarch64/checksum.txt, file for file" in built.stderr
    assert docker("image", "inspect", "--format", "{{.Architecture}}/{{.Variant}}", tag).stdout.strip() == "arm64/v8"
    assert not present(f"{prefix}checksum:0.1.0-amd64"), "--arch arm64 built the amd64 image too"

    # The compiled module, imported by the image's own interpreter under emulation.
    code = "import platform, wheelpipe_fixture_native as m; print(platform.machine(), m.checksum_text('Wikipedia'))"
    ran = docker("run", "--rm", "--platform", "linux/arm64", "--network", "none", "--entrypoint", "/srv/venv/bin/python", tag, "-c", code)
    assert ran.stdout.strip() == "aarch64 11e60398"

    verified = invoke(two_architectures, "verify-image", "--service", "checksum", "--arch", "arm64", *options)
    assert f"{tag}: runs as uid 10001" in verified.stdout, verified.stdout
    assert "checksum: started, and GET /healthz on port 8080 answered from inside and outside the container" in verified.stdout, verified.stdout


def test_a_push_of_both_architectures_is_one_image_index_which_the_deploy_manifest_pins(
    two_architectures: Path, docker_base_image: str, tmp_path: Path, prefix: str,
) -> None:
    repository = Path(shutil.copytree(two_architectures, tmp_path / "repo", symlinks=True))
    with container_registry(tmp_path / "registry") as port:
        host = f"127.0.0.1:{port}"
        registry_prefix = f"{host}/{prefix}"
        try:
            pushed = invoke(repository, "image", "--service", "checksum", "--push", "--prefix", registry_prefix, "--base-image", docker_base_image)
            repository_name = f"{registry_prefix}checksum"
            found = re.search(rf"^{re.escape(repository_name)}@(sha256:[0-9a-f]{{64}})$", pushed.stdout, re.MULTILINE)
            assert found, pushed.stdout + pushed.stderr
            digest = found.group(1)
            index = subprocess.run(
                ["curl", "-sf", "-H", f"Accept: {INDEX_TYPE}", f"http://{host}/v2/{prefix}checksum/manifests/0.1.0"], capture_output=True, check=True,
            ).stdout
            assert f"sha256:{hashlib.sha256(index).hexdigest()}" == digest
            document = json.loads(index)
            assert document["mediaType"] == INDEX_TYPE
            platforms = {(m["platform"]["architecture"], m["platform"].get("variant")): m["digest"] for m in document["manifests"]}
            assert sorted(platforms) == [("amd64", None), ("arm64", "v8")]
            for (arch, _), member in platforms.items():
                digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", f"{repository_name}:0.1.0-{arch}").stdout)
                assert f"{repository_name}@{member}" in digests, (arch, digests)

            # A node pulls its own architecture's image by the one digest.
            docker("pull", "-q", "--platform", "linux/arm64", f"{repository_name}@{digest}")
            assert docker("image", "inspect", "--format", "{{.Architecture}}", f"{repository_name}@{digest}").stdout.strip() == "arm64"

            pyproject = repository / "pyproject.toml"
            pyproject.write_text(pyproject.read_text() + f'\n[tool.wheelpipe.deploy.prod]\nnamespace = "calc"\nregistry = "{registry_prefix}"\n')
            invoke(repository, "manifests")
            written = (repository / "deploy/manifests/prod/checksum.yaml").read_text()
            assert f'"image": "{repository_name}@{digest}"' in written, written
            checked = invoke(repository, "manifests", "--check")
            assert "matches the model and the registry" in checked.stdout + checked.stderr
        finally:
            remove_images(registry_prefix)


def test_verify_wheelhouse_install_installs_each_platforms_manifest_offline_the_aarch64_one_under_qemu(
    two_architectures: Path, docker_base_image: str, arm64_base: str,
) -> None:
    result = invoke(two_architectures, "verify-wheelhouse", "--install", "--base-image", docker_base_image)
    for machine in ("x86_64", "aarch64"):
        assert f"checksum: wheelhouse/install/{machine}/checksum.txt installs offline; imported " in result.stdout, result.stdout
    assert f"installing checksum for manylinux_2_36_aarch64 offline from the wheelhouse and importing them, in a throwaway container of {arm64_base} (no network)" in result.stderr
