"""A build context: the only files an image build can see.

It holds only the service's wheels, split into third-party and first-party parts so that a
code change leaves the dependency layers cached, the installer (uv) with its hash, the launch
files of the service's first-party part, and the Dockerfile.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import healthprobe, importcheck, launch
from ..console import report
from ..errors import DockerError
from ..fsutil import exclusive_lock
from ..lockfile import format_pins
from ..wheelhouse import Wheelhouse
from .record import ServiceImage

DOCKERFILE = "service.Dockerfile"
# Under the wheelhouse store: one build context directory per service.
CONTEXTS = "image-contexts"
# In first-party/ of the build context: what the app stage checks of how the image runs the
# service (launch.Launch), the scripts it installs for that, the script it imports the
# service with, and an http service's health probe.
SERVICE_ENV = "service.env"
ENTRYPOINT_SCRIPT = "service"
HEALTH_SCRIPT = "service-health"
IMPORT_CHECK = "importcheck.py"
HEALTH_PROBE = "healthprobe.py"
# The parts of a build context: what the shared stages need, and what the service's own need.
INSTALLER_PART, THIRD_PARTY, FIRST_PARTY = "installer", "third-party", "first-party"
ALL_PARTS = (INSTALLER_PART, THIRD_PARTY, FIRST_PARTY)
SHARED_PARTS = (INSTALLER_PART, THIRD_PARTY)


def label_instruction(labels: dict[str, str]) -> str:
    """One LABEL instruction with the values written out (the Dockerfile's last line).

    Inside double quotes a Dockerfile expands `$` and ends the value at `"`; a backslash
    escapes both and itself. A line break cannot be written at all, and git gives none.
    """

    def quoted(text: str) -> str:
        if "\n" in text or "\r" in text:
            msg = f"image label value {text!r} holds a line break"
            raise DockerError(msg)
        return '"' + re.sub(r'(["\\$])', r"\\\1", text) + '"'

    return "LABEL " + " ".join(f"{quoted(key)}={quoted(value)}" for key, value in labels.items()) + "\n"


def environment_instruction(environment: dict[str, str]) -> str:
    """One ENV instruction: the service's port in the variable its code reads. Written into the
    last stage (the image) rather than a shared one, so that services on the same closure and
    port share every layer whatever variable they read it from."""
    return "ENV " + " ".join(f'{key}="{value}"' for key, value in environment.items()) + "\n"


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def prepare_context(house: Wheelhouse, image: ServiceImage, context: Path, dockerfile_text: str, parts: tuple[str, ...], *, final: bool) -> None:
    """The only files the build can see: of installer/, third-party/ and first-party/ (with
    the launch files) those in `parts`, and the Dockerfile. The `final` build, the image's own
    (not a shared stage's), ends it with the image's LABEL and ENV instructions."""
    by_hash = {e.sha256: e for e in house.entries.values()}
    for part, pins in ((THIRD_PARTY, image.third_party), (FIRST_PARTY, image.first_party)):
        if part not in parts:
            continue
        (context / part).mkdir(parents=True)
        for _, _, digest in pins:
            _link_or_copy(house.path / by_hash[digest].file, context / part / by_hash[digest].file)
        header = f"The {part} part of {image.manifest}, for the image build."
        (context / part / "requirements.txt").write_text(format_pins(list(pins), header))
    if INSTALLER_PART in parts:
        installer = house.installer(image.target)
        (context / INSTALLER_PART).mkdir()
        _link_or_copy(house.path / installer.file, context / INSTALLER_PART / installer.file)
        # The build checks the wheel against the hash the wheelhouse verified, so what runs as
        # the installer is that wheel even if the file changed after the check.
        (context / INSTALLER_PART / "SHA256SUMS").write_text(f"{installer.sha256}  {installer.file}\n")
    if FIRST_PARTY in parts:
        files = launch.launch(image.runs)
        (context / FIRST_PARTY / SERVICE_ENV).write_text(files.service_env)
        (context / FIRST_PARTY / ENTRYPOINT_SCRIPT).write_text(files.entrypoint)
        if files.health is not None:
            (context / FIRST_PARTY / HEALTH_SCRIPT).write_text(files.health)
        shutil.copyfile(importcheck.__file__, context / FIRST_PARTY / IMPORT_CHECK)
        shutil.copyfile(healthprobe.__file__, context / FIRST_PARTY / HEALTH_PROBE)
    text = dockerfile_text
    if final:
        text = text.rstrip("\n") + "\n" + label_instruction(dict(image.labels))
        environment = launch.environment(image.runs)
        if environment:  # a worker's image sets none
            text = text.rstrip("\n") + "\n" + environment_instruction(environment)
    (context / DOCKERFILE).write_text(text)


@contextmanager
def context_directory(store: Path, service: str) -> Iterator[Path]:
    """An empty directory for the service's build context, at the same path for every build.

    BuildKit keeps what it was sent from a path, and then sends only the files whose size or
    time changed: the installer wheel (18 MB) once, not on every build. Builds of the same
    service wait for each other here; the directory is emptied before and after use.
    """
    directory = store / CONTEXTS / service

    def waiting() -> None:
        report.info(f"another build of {service} is using its build context; waiting for it to finish")

    with exclusive_lock(directory.with_name(f"{service}.lock"), waiting):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)
