"""Running another architecture's programs on this host: qemu-user-static, registered with the
kernel's binfmt_misc.

An arm64 root file system bootstrapped on an x86_64 host, an arm64 container and an arm64
build step all run arm64 binaries; the kernel hands each to the qemu interpreter registered
for its architecture. The registration must carry the F flag (the interpreter is opened when
it is registered), so that it also works inside a chroot or a container, which do not have
the interpreter at its path. Debian's qemu-user-static registers so.
"""

from __future__ import annotations

import platform
from pathlib import Path

from .errors import TargetError

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
# What registers the interpreters on Debian, as root (binfmt-support mounts binfmt_misc).
REGISTER_COMMAND = "apt-get install qemu-user-static binfmt-support && update-binfmts --enable"


def host_machine() -> str:
    return platform.machine()


def is_foreign(machine: str) -> bool:
    """Whether `machine`'s programs run here only under emulation."""
    return machine != host_machine()


def require_runs(machine: str, purpose: str, binfmt_misc: Path = BINFMT_MISC) -> None:
    """Fail in one line unless this host runs `machine`'s programs: natively, or through a
    qemu interpreter binfmt_misc has enabled with the F flag."""
    if not is_foreign(machine):
        return
    host = host_machine()
    entry = binfmt_misc / f"qemu-{machine}"
    fix = f"register it as root: {REGISTER_COMMAND} qemu-{machine} (CI: .ci/builders)"
    try:
        lines = entry.read_text().splitlines()
    except OSError:
        mounted = (binfmt_misc / "status").exists()
        where = f"{entry} does not exist" if mounted else f"binfmt_misc is not mounted at {binfmt_misc}"
        msg = f"{purpose} runs {machine} programs, which this {host} host runs only through qemu registered with binfmt_misc, and {where}; {fix}"
        raise TargetError(msg) from None
    if "enabled" not in lines:
        msg = f"{purpose} runs {machine} programs, and {entry} is registered but disabled; {fix}"
        raise TargetError(msg)
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:
        msg = f"{purpose} runs {machine} programs, and {entry} lacks the F flag (flags: {flags or 'none'}), so chroots and containers cannot find qemu; {fix}"
        raise TargetError(msg)
