"""An image's venv checked against its install manifest, file for file, without running it.

`invoke image` verifies every image before it tags it; `invoke verify-image` verifies an
existing one (then starts it: startcheck).
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name

from .. import launch, venvfiles
from ..console import in_context, report
from ..docker import Docker, Tree
from ..errors import DockerError
from ..wheelhouse import Wheelhouse
from .context import ENTRYPOINT_SCRIPT, HEALTH_SCRIPT
from .record import ServiceImage

# Where the Dockerfile puts the service's virtual environment.
VENV = PurePosixPath("/srv/venv")


@dataclass(frozen=True)
class Installed:
    """What the image's interpreter can import distributions from, read from the image."""

    distributions: dict[str, str]  # canonical name -> version
    tree: Tree  # the venv: every file's bytes, every link
    unaccounted: list[str]  # what puts places outside the venv on its path: no manifest covers them


def _metadata_file(path: PurePosixPath) -> bool:
    """What a distribution search over the venv reads: the files naming each distribution, the
    .pth files that extend the path, and the venv's configuration."""
    return (
        path.suffix == ".pth"
        or path == PurePosixPath("pyvenv.cfg")
        or (path.parent.suffix in (".dist-info", ".egg-info") and path.name in ("METADATA", "PKG-INFO"))
    )


def read_installed(docker: Docker, image: str) -> Installed:
    """The venv's distributions, read from the image's files: nothing runs in the image.

    The interpreter's search path is rebuilt as `site` builds it: the venv's site-packages and
    the directories its .pth files name (their `import` lines, code, are not run). A venv that
    sees the base's site-packages, a .pth entry outside the venv and PYTHONPATH in the image's
    environment are reported rather than followed.
    """
    # Two reads of the engine at once: the configuration, while the files stream.
    with ThreadPoolExecutor(max_workers=1) as pool:
        configured = pool.submit(in_context(docker.config), image)
        # Every file: each is compared with the wheel it came from (venvfiles).
        tree = docker.read_tree(image, str(VENV), lambda _: True)
        image_config = configured.result()
    environment = image_config.get("Env") or []
    unaccounted = [f"the image sets {entry}" for entry in environment if entry.startswith("PYTHONPATH=") and entry != "PYTHONPATH="]
    # An override's `USER root` (or none at all) would ship a root image: the recipe check
    # refuses it before the build, and the image's own configuration is checked here too.
    user = str(image_config.get("User") or "")
    if user.partition(":")[0].lower() in ("", "root", "0"):
        unaccounted.append(f"the image runs as {'root (it sets no USER)' if not user else f'user {user}'}, not an unprivileged user")
    config = tree.files.get(PurePosixPath("pyvenv.cfg"), b"").decode(errors="replace")
    options = {key.strip(): value.strip() for key, _, value in (line.partition("=") for line in config.splitlines())}
    if options.get("include-system-site-packages", "false").lower() == "true":
        unaccounted.append(f"{VENV}/pyvenv.cfg includes the base image's site-packages")
    path = []
    for site in sorted(d for d in tree.directories if len(d.parts) == 3 and d.match("lib*/python*/site-packages")):
        path.append(site)
        for pth in sorted(f for f in tree.files if f.parent == site and f.suffix == ".pth"):
            for line in tree.files[pth].decode(errors="replace").splitlines():
                entry = line.strip()
                if not entry or entry.startswith(("#", "import ", "import\t")):
                    continue
                named = PurePosixPath(os.path.normpath(VENV / site / entry))
                if not named.is_relative_to(VENV):
                    unaccounted.append(f"{pth.name} puts {named} on the path")
                elif named.relative_to(VENV) in tree.directories:
                    path.append(named.relative_to(VENV))
    with tempfile.TemporaryDirectory(prefix="wheelpipe-verify-") as tmp:
        # importlib.metadata reads distributions from a file system: give it the files read.
        for file, content in tree.files.items():
            if not _metadata_file(file):
                continue
            (Path(tmp) / file).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / file).write_bytes(content)
        found: dict[str, str] = {
            canonicalize_name(d.metadata["Name"]): d.version
            for d in importlib.metadata.distributions(path=[str(Path(tmp) / p) for p in path])
            if d.metadata["Name"]
        }
    return Installed(found, tree, unaccounted)


def verify_image(house: Wheelhouse, docker: Docker, reference: str, image: ServiceImage) -> None:
    """The image `reference` names (a tag or an id) holds in its venv exactly the install
    manifest's pins, nothing more, nothing less, and every file of it is what the pinned wheels
    (or the installer, or the tooling's launch scripts) put there (venvfiles)."""
    expected = {pin.name: pin.version for pin in image.pins}
    installed = read_installed(docker, reference)
    found = installed.distributions
    problems = [f"missing {name}=={version}" for name, version in sorted(expected.items()) if name not in found]
    problems += [f"extra {name}=={version}" for name, version in sorted(found.items()) if name not in expected]
    problems += [
        f"{name} is {found[name]}, manifest pins {version}"
        for name, version in sorted(expected.items())
        if name in found and found[name] != version
    ]
    problems += installed.unaccounted
    if not problems:
        problems += _file_differences(house, image, installed.tree)
    if problems:
        shown = problems[:5] + ([f"and {len(problems) - 5} more"] if len(problems) > 5 else [])
        msg = f"image {reference} does not match {image.manifest}: {'; '.join(shown)}"
        raise DockerError(msg)
    report.info(f"{reference}: its {len(found)} distributions are exactly those of {image.manifest}, file for file")


def _file_differences(house: Wheelhouse, image: ServiceImage, tree: Tree) -> list[str]:
    by_hash = {e.sha256: e for e in house.entries.values()}
    wheels = []
    for pin in image.pins:
        (digest,) = pin.hashes
        entry = by_hash.get(digest.removeprefix("sha256:"))
        if entry is None:
            return [f"{pin.name}=={pin.version}: no wheel of the wheelhouse has the sha256 the manifest pins"]
        wheels.append(house.path / entry.file)
    sites = sorted(d for d in tree.directories if len(d.parts) == 3 and d.match("lib*/python*/site-packages"))
    if len(sites) != 1:
        return [f"expected one lib/pythonX.Y/site-packages in {VENV}, found {len(sites)}"]
    launched = launch.launch(image.runs)
    written = {PurePosixPath("bin") / ENTRYPOINT_SCRIPT: launched.entrypoint.encode()}
    if launched.health is not None:
        written[PurePosixPath("bin") / HEALTH_SCRIPT] = launched.health.encode()
    layout = venvfiles.layout(wheels, sites[0], VENV)
    return venvfiles.differences(tree.files, set(tree.links), layout, written)
