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
from .tomlvalues import refuse_unknown_keys, shown

_UV_NEWEST_MANYLINUX = (2, 40)
_MANYLINUX = re.compile(r"^manylinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>\w+)$")
# The architectures wheelpipe builds and runs images for (x86_64 natively or in a builder
# container, aarch64 in an arm64 one, under qemu on an x86_64 host), each with the name
# Debian and Docker give it.
DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
ARCHITECTURES = tuple(DEBIAN_ARCHITECTURES)
_BY_DEBIAN_NAME = {debian: machine for machine, debian in DEBIAN_ARCHITECTURES.items()}
# What other tools call them, to say which name a platform tag wants instead.
_ARCHITECTURE_ALIASES = {**_BY_DEBIAN_NAME, "x64": "x86_64", "armv8": "aarch64"}
TABLE = "[tool.wheelpipe.target]"
_KEYS = ("python-version", "implementation", "abi", "platform", "platforms")


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
        found = _MANYLINUX.match(target.platform)
        if not found:
            msg = f"{source}: target platform must be a manylinux_X_Y_ARCH tag, found {target.platform!r}"
            raise RepositoryError(msg)
        if found["arch"] not in ARCHITECTURES:
            alias = _ARCHITECTURE_ALIASES.get(found["arch"])
            hint = f"; {found['arch']} is {alias}: manylinux_{found['major']}_{found['minor']}_{alias}" if alias else ""
            msg = f"{source}: target platform {target.platform!r} names the architecture {found['arch']!r}, which wheelpipe does not build for (known: {', '.join(ARCHITECTURES)}){hint}"
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

    @property
    def debian_arch(self) -> str:
        """The architecture as Debian (and Docker's platform) names it: amd64, arm64."""
        return DEBIAN_ARCHITECTURES.get(self.machine, self.machine)

    @property
    def docker_platform(self) -> str:
        return f"linux/{self.debian_arch}"

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


def targets_from_table(table: dict[str, Any], source: str) -> tuple[Target, ...]:
    """The targets [tool.wheelpipe.target] declares: one interpreter on one `platform`, or on
    each of `platforms` (several architectures, one lock for all of them), in that order."""
    where = f"{source}: {TABLE}"
    refuse_unknown_keys(table, _KEYS, where, RepositoryError)
    if "platforms" not in table:
        return (Target.from_table(table, source),)
    if "platform" in table:
        msg = f"{where} has both platform and platforms: name one platform, or the list of them"
        raise RepositoryError(msg)
    platforms = table["platforms"]
    if not (isinstance(platforms, list) and platforms and all(isinstance(p, str) for p in platforms)):
        msg = f"{where} platforms must be a non-empty list of manylinux_X_Y_ARCH tags, found {shown(platforms)}"
        raise RepositoryError(msg)
    targets = tuple(Target.from_table({**table, "platform": platform}, source) for platform in platforms)
    machines = [target.machine for target in targets]
    repeated = sorted({machine for machine in machines if machines.count(machine) > 1})
    if repeated:
        msg = f"{where} platforms names {', '.join(repeated)} more than once ({', '.join(platforms)}): one platform per architecture"
        raise RepositoryError(msg)
    return targets


def described(targets: tuple[Target, ...]) -> str:
    """The targets for a message: "the target CPython 3.11 on ...", or each of several."""
    if len(targets) == 1:
        return f"the target {targets[0].describe()}"
    return f"the targets {' and '.join(t.describe() for t in targets)}"


def architecture(name: str, where: str) -> str:
    """The machine name (x86_64, aarch64) of an architecture named either way (arm64 too)."""
    if name in DEBIAN_ARCHITECTURES:
        return name
    if name in _BY_DEBIAN_NAME:
        return _BY_DEBIAN_NAME[name]
    known = ", ".join(f"{debian} ({machine})" for machine, debian in DEBIAN_ARCHITECTURES.items())
    msg = f"{where}: unknown architecture {name!r}: expected one of {known}"
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
