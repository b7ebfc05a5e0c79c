"""The target interpreter and platform, read from the root pyproject.toml."""

from __future__ import annotations

import functools
import platform
import re
import sys
from dataclasses import dataclass
from typing import Any

from packaging.tags import Tag, compatible_tags, cpython_tags

from .errors import RepositoryError, TargetError

_UV_NEWEST_MANYLINUX = (2, 40)
_MANYLINUX = re.compile(r"^manylinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>\w+)$")


@dataclass(frozen=True)
class Target:
    python_version: str  # "3.11"
    implementation: str  # "cp"
    abi: str  # "cp311"
    platform: str  # "manylinux_2_36_x86_64"

    @classmethod
    def from_table(cls, table: dict[str, Any], source: str) -> Target:
        expected = ("python-version", "implementation", "abi", "platform")
        missing = [key for key in expected if not isinstance(table.get(key), str)]
        if missing:
            msg = f"{source}: [tool.wheelpipe.target] needs string keys {', '.join(missing)}"
            raise RepositoryError(msg)
        target = cls(*(table[key] for key in expected))
        if not re.fullmatch(r"3\.\d+", target.python_version):
            msg = f"{source}: target python-version must look like '3.11', found {target.python_version!r}"
            raise RepositoryError(msg)
        if not _MANYLINUX.match(target.platform):
            msg = f"{source}: target platform must be a manylinux_X_Y_ARCH tag, found {target.platform!r}"
            raise RepositoryError(msg)
        return target

    def _platform_part(self, name: str) -> str:
        match = _MANYLINUX.match(self.platform)
        if match is None:  # from_table refuses such a target; one made in code can still be
            msg = f"target platform must be a manylinux_X_Y_ARCH tag, found {self.platform!r}"
            raise TargetError(msg)
        return match[name]

    @property
    def glibc(self) -> tuple[int, int]:
        return int(self._platform_part("major")), int(self._platform_part("minor"))

    @property
    def machine(self) -> str:
        return self._platform_part("arch")

    def describe(self) -> str:
        return f"CPython {self.python_version} on {self.platform}"

    def manylinux_platforms(self) -> list[str]:
        """Every manylinux tag that runs on the target's glibc, newest first.

        pip does not expand `--platform manylinux_2_36_x86_64` to older glibc versions
        by itself, so each is listed.
        """
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
        legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
        tags += [f"{alias}_{self.machine}" for glibc, alias in legacy.items() if glibc <= self.glibc]
        return tags

    def uv_platform(self) -> str:
        """The target as uv's --python-platform names it, e.g. x86_64-manylinux_2_36.

        uv knows manylinux platforms up to glibc 2.40; a newer target (Debian trixie's 2.41)
        resolves as 2.40, which differs only for a wheel built for glibc 2.41 itself. The
        wheelhouse still takes every wheel the target's own tags accept.
        """
        major, minor = min(self.glibc, _UV_NEWEST_MANYLINUX)
        return f"{self.machine}-manylinux_{major}_{minor}"

    def tag_priority(self) -> dict[Tag, int]:
        """Every wheel tag an interpreter of the target accepts, most specific first (0)."""
        major, minor = (int(x) for x in self.python_version.split("."))
        # linux_<arch>: a wheel built here from an sdist, by an interpreter that matches the target.
        platforms = [*self.manylinux_platforms(), f"linux_{self.machine}"]
        ordered = [*cpython_tags((major, minor), abis=[self.abi], platforms=platforms)]
        ordered += [*compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=platforms)]
        priority: dict[Tag, int] = {}
        for rank, tag in enumerate(ordered):
            priority.setdefault(tag, rank)
        return priority

    def accepts(self) -> frozenset[Tag]:
        """Every wheel tag an interpreter of the target accepts."""
        return _accepted_tags(self)

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the target, to decide which requirements apply there."""
        return {
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "python_version": self.python_version,
            # The patch level is not declared: assume the first release of the minor version.
            "python_full_version": f"{self.python_version}.0",
            "implementation_version": f"{self.python_version}.0",
            "os_name": "posix",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
            "platform_release": "",
            "platform_version": "",
        }

    def check_runs_like(self, python_version: str, machine: str, glibc: tuple[int, int] | None, where: str) -> None:
        """Fail unless an interpreter at `where` can resolve and build for this target."""
        problems = []
        if python_version != self.python_version:
            problems.append(f"Python {python_version} (target wants {self.python_version})")
        if machine != self.machine:
            problems.append(f"{machine} (target wants {self.machine})")
        if glibc is None:
            problems.append(f"no glibc (target wants glibc {self.glibc[0]}.{self.glibc[1]})")
        elif glibc > self.glibc:
            # Anything built against a newer glibc than the target's may not load there.
            problems.append(f"glibc {glibc[0]}.{glibc[1]} (target has {self.glibc[0]}.{self.glibc[1]})")
        if problems:
            msg = f"{where} does not match the target {self.describe()}: {'; '.join(problems)}"
            raise TargetError(msg)


@functools.lru_cache(maxsize=4)
def _accepted_tags(target: Target) -> frozenset[Tag]:
    return frozenset(target.tag_priority())


def host_glibc() -> tuple[int, int] | None:
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return None
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def check_host(target: Target, purpose: str) -> None:
    """Locks are resolved, and sdists built, by the host's interpreter: it must match."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    target.check_runs_like(host, platform.machine(), host_glibc(), f"this interpreter ({sys.executable}), used to {purpose},")
