"""Running arm64 programs on this x86_64 host: the check before anything emulated runs, and
what a missing base image for another architecture or suite is to be got with.

The kernel's registrations are read from binfmt_misc; these tests point the check at a
directory laid out as the kernel lays out /proc/sys/fs/binfmt_misc, since unregistering the
real interpreter would pull it from under every other test running at the same time. The
real registration is what `invoke base-image --arch arm64` runs under (it bootstraps its root
file system with the check passed).
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from monorepo import error_lines, invoke

from wheelpipe import baseimage, emulation
from wheelpipe.errors import TargetError
from wheelpipe.target import Target

FOREIGN = "aarch64" if platform.machine() != "aarch64" else "x86_64"
REGISTERED = f"""\
enabled
interpreter /usr/libexec/qemu-binfmt/{FOREIGN}-binfmt-P
flags: POCF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def binfmt(tmp_path: Path, *, mounted: bool = True, entry: str | None = REGISTERED) -> Path:
    directory = tmp_path / "binfmt_misc"
    directory.mkdir()
    if mounted:
        (directory / "status").write_text("enabled\n")
        (directory / "register").touch()
    if entry is not None:
        (directory / f"qemu-{FOREIGN}").write_text(entry)
    return directory


def refusal(directory: Path) -> str:
    with pytest.raises(TargetError) as caught:
        emulation.require_runs(FOREIGN, "the arm64 base image", directory)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_this_host_s_own_architecture_needs_no_registration(tmp_path: Path) -> None:
    emulation.require_runs(platform.machine(), "anything", tmp_path / "nothing-here")


def test_an_enabled_registration_with_the_f_flag_passes(tmp_path: Path) -> None:
    emulation.require_runs(FOREIGN, "the arm64 base image", binfmt(tmp_path))


def test_binfmt_misc_not_mounted_is_one_line_naming_the_command_that_registers_qemu(tmp_path: Path) -> None:
    directory = binfmt(tmp_path, mounted=False, entry=None)
    assert refusal(directory) == (
        f"the arm64 base image runs {FOREIGN} programs, which this {platform.machine()} host runs only through qemu registered with binfmt_misc, "
        f"and binfmt_misc is not mounted at {directory}; register it as root: "
        f"apt-get install qemu-user-static binfmt-support && update-binfmts --enable qemu-{FOREIGN} (CI: .ci/builders)"
    )


def test_no_registration_for_the_architecture_names_the_missing_entry(tmp_path: Path) -> None:
    directory = binfmt(tmp_path, entry=None)
    assert f"and {directory / f'qemu-{FOREIGN}'} does not exist; register it as root: " in refusal(directory)


def test_a_disabled_registration_is_named(tmp_path: Path) -> None:
    directory = binfmt(tmp_path, entry=REGISTERED.replace("enabled", "disabled"))
    assert "is registered but disabled; register it as root: " in refusal(directory)


def test_a_registration_without_the_f_flag_is_named_since_chroots_and_containers_need_it(tmp_path: Path) -> None:
    directory = binfmt(tmp_path, entry=REGISTERED.replace("flags: POCF", "flags: OC"))
    assert "lacks the F flag (flags: OC), so chroots and containers cannot find qemu" in refusal(directory)


@pytest.mark.parametrize(
    ("arch", "says"),
    [
        ("riscv64", "error: --arch: unknown architecture 'riscv64': expected one of amd64 (x86_64), arm64 (aarch64)"),
        (
            "arm64",
            "error: --arch: pyproject.toml [tool.wheelpipe.target] declares no aarch64 platform (manylinux_2_36_x86_64); "
            "list manylinux_2_36_aarch64 in its platforms",
        ),
    ],
    ids=["unknown", "undeclared"],
)
def test_base_image_for_an_architecture_the_repository_does_not_declare_is_one_line_before_docker(repo_copy: Path, arch: str, says: str) -> None:
    result = invoke(repo_copy, "base-image", "--arch", arch, check=False, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 1
    assert error_lines(result) == [says]


HOST = platform.machine()


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (
            Target("3.11", "cp", "cp311", f"manylinux_2_36_{HOST}"),
            "`docker pull python:3.11-slim-bookworm`, or where no registry is reachable run `invoke base-image` "
            f"and build with --base-image local/python:3.11-slim-bookworm{'' if HOST == 'x86_64' else '-arm64'}",
        ),
        (
            Target("3.11", "cp", "cp311", f"manylinux_2_36_{FOREIGN}"),
            f"`docker pull --platform linux/{'arm64' if FOREIGN == 'aarch64' else 'amd64'} python:3.11-slim-bookworm`, or where no registry is reachable "
            f"run `invoke base-image --arch {'arm64' if FOREIGN == 'aarch64' else 'amd64'}` "
            f"and build with --base-image local/python:3.11-slim-bookworm{'-arm64' if FOREIGN == 'aarch64' else ''}",
        ),
        (
            Target("3.13", "cp", "cp313", f"manylinux_2_41_{HOST}"),
            "`docker pull python:3.11-slim-bookworm`, or where no registry is reachable run `invoke base-image --suite trixie` "
            f"and build with --base-image local/python:3.13-slim-trixie{'' if HOST == 'x86_64' else '-arm64'}",
        ),
        (
            Target("3.12", "cp", "cp312", f"manylinux_2_36_{HOST}"),
            f"`docker pull python:3.11-slim-bookworm`, or build one with CPython 3.12 and glibc 2.36 for {HOST}",
        ),
    ],
    ids=["this-host", "the-other-architecture", "another-suite", "no-suite"],
)
def test_a_missing_base_image_is_pulled_for_the_targets_platform_or_bootstrapped_for_its_suite_and_architecture(target: Target, says: str) -> None:
    assert baseimage.how_to_get("python:3.11-slim-bookworm", target) == says
