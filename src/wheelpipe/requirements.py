"""The requirement files: where each lock and its input live, what a service's input says,
and a service's lock, loaded only while it still matches that input.

Under requirements/, each NAME has NAME.in (what is required) and NAME.txt (its lock: every
pin with its hashes):

- `<service>.in` is generated from the pyproject.toml files of the service and of the
  internal packages it uses (input_text); `<service>.txt` is the service's lock;
- `dev.in` (the tooling, by hand) compiles into `dev.txt`, the tooling lock, together with
  every service's .in; its pin of uv is the images' installer (installer_pin);
- `build.in` (generated) compiles into `build.txt`, the build lock: the first-party
  packages' build backends;
- `sdists/<name>-<version>.in` (generated) compiles into `sdists/<name>-<version>.txt`, the
  build lock of one dependency the index publishes only as an sdist: what that sdist's own
  [build-system] requires (sdist_lock_file).

So no service may be named dev or build.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from .lockfile import Pin

REQUIREMENTS_DIR = "requirements"
TOOLING = "dev"
BUILD = "build"
RESERVED_SERVICE_NAMES = {TOOLING: "the tooling lock", BUILD: "the build lock of sdist-only dependencies"}
# The image installer: uv, pinned by the tooling lock, runs from its wheel in image build
# stages only, so that no installer ever lands in a runtime image.
INSTALLER = "uv"


def lock_file(name: str, suffix: str = "txt") -> str:
    """requirements/NAME.txt, NAME's lock (or with suffix "in", its input), relative to the
    repository's root, as messages name it."""
    return f"{REQUIREMENTS_DIR}/{name}.{suffix}"


TOOLING_LOCK = lock_file(TOOLING)
BUILD_LOCK = lock_file(BUILD)
# Each sdist-only dependency's own build lock, in a directory of their own: no service's
# name can clash with one, and an upgrade's diff touches only the sdist it concerns.
SDIST_LOCKS_DIR = f"{REQUIREMENTS_DIR}/sdists"


def sdist_lock_file(name: str, version: str, suffix: str = "txt") -> str:
    """requirements/sdists/<name>-<version>.txt: the build lock of the sdist of one pin
    (name canonical), relative to the repository's root."""
    return f"{SDIST_LOCKS_DIR}/{name}-{version}.{suffix}"


def lock_path(root: Path, name: str) -> Path:
    return root / lock_file(name)


@dataclass(frozen=True)
class Divergence:
    """A package the service locks pin at different versions: each service installs its own."""

    name: str
    pinned_by: dict[str, tuple[str, ...]]  # version -> the services whose lock pins it, oldest version first

    def describe(self) -> str:
        """`1.16.0 (order), 1.17.0 (user)`: each version and the services pinning it."""
        return ", ".join(f"{version} ({', '.join(services)})" for version, services in self.pinned_by.items())


def divergences(locks: Mapping[str, Mapping[str, Pin]]) -> list[Divergence]:
    """Every package that two service locks pin at different versions, by name."""
    versions: dict[str, dict[str, list[str]]] = {}
    for service in sorted(locks):
        for name, pin in locks[service].items():
            versions.setdefault(name, {}).setdefault(pin.version, []).append(service)
    return [
        Divergence(name, {version: tuple(by[version]) for version in sorted(by, key=Version)})
        for name, by in sorted(versions.items())
        if len(by) > 1
    ]
