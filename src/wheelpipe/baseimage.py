"""`invoke base-image`: a python:3.11-slim-bookworm equivalent bootstrapped from Debian packages,
and the builder image derived from it.

For build hosts that reach no container registry (air-gapped sites, this project's CI):
debootstrap a minimal Debian suite with its python3, bring it up to date with the
security suite, trim it like Debian's slim images, and `docker import` it.

The builder image is that base plus a compiler and Python's headers, for building a
dependency published only as an sdist when this host is not the target (build/sdists.py). It is
labelled as a builder, and the base check refuses it: no runtime image carries a compiler.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import emulation
from .console import report
from .docker import Docker
from .errors import DockerError, TargetError, ToolError
from .fsutil import write_atomic
from .target import DEBIAN_ARCHITECTURES, Target
from .tools import pipe, run

BASE_REPOSITORY = "local/python"
# The variant an image config names for an architecture, as Docker's official images do.
_VARIANTS = {"arm64": "v8"}
BUILDER_REPOSITORY = "local/python-builder"
DEFAULT_TAG = f"{BASE_REPOSITORY}:3.11-slim-bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# The Python each Debian suite ships as python3: the image must match the target.
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
SUITE_GLIBC = {"bookworm": (2, 36), "trixie": (2, 41)}
# What building a C or C++ extension needs, without build-essential's Debian packaging tools
# (dpkg-dev and its Perl), which no PEP 517 backend calls and which double the apt step.
BUILDER_PACKAGES = ("gcc", "g++", "make", "libc6-dev", "python3-dev", "python3-venv")
# Labels of a builder image: what it is, and the base image id it was made from.
ROLE_LABEL = "io.wheelpipe.role"
BASE_ID_LABEL = "io.wheelpipe.base-id"
BUILDER_ROLE = "builder"
_SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
_PROBE = (
    "import json, platform, sys; "
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], 'machine': platform.machine(), "
    "'glibc': platform.libc_ver()[1], 'executable': sys.executable}))"
)


def _arch_suffix(machine: str) -> str:
    # x86_64's tags carry no suffix, as they did before there were other architectures.
    return "" if machine == "x86_64" else f"-{DEBIAN_ARCHITECTURES.get(machine, machine)}"


def base_tag(suite: str, machine: str = "x86_64") -> str:
    """The conventional tag of a suite's bootstrapped base image, e.g. local/python:3.13-slim-trixie
    (local/python:3.13-slim-trixie-arm64 for aarch64)."""
    return f"{BASE_REPOSITORY}:{SUITE_PYTHON.get(suite, 'unknown')}-slim-{suite}{_arch_suffix(machine)}"


def builder_tag(suite: str, machine: str = "x86_64") -> str:
    """The conventional tag of a suite's builder image, e.g. local/python-builder:3.13-slim-trixie
    (local/python-builder:3.13-slim-trixie-arm64 for aarch64)."""
    return f"{BUILDER_REPOSITORY}:{SUITE_PYTHON.get(suite, 'unknown')}-slim-{suite}{_arch_suffix(machine)}"


def base_for(base: str, target: Target, targets: tuple[Target, ...]) -> str:
    """The base image of the target's images: `base` itself for a single target, and for
    x86_64 among several; for another architecture among several, `base` with its Debian name
    appended to the tag (local/python:3.11-slim-bookworm-arm64: what `invoke base-image --arch
    arm64` makes). An engine keeps one image per name, so each architecture needs its own."""
    if len(targets) == 1:
        return base
    return f"{base}{_arch_suffix(target.machine)}"


def how_to_get(image: str, target: Target) -> str:
    """How to come by a missing base image for the target: pull it (for the target's
    platform when this host is another), or bootstrap the matching suite's and use that."""
    foreign = emulation.is_foreign(target.machine)
    pull = f"`docker pull {f'--platform {target.docker_platform} ' if foreign else ''}{image}`"
    suite = suite_for(target)
    if suite is None:
        return f"{pull}, or build one with CPython {target.python_version} and glibc {target.glibc[0]}.{target.glibc[1]} for {target.machine}"
    options = "".join((f" --suite {suite}" if suite != "bookworm" else "", f" --arch {target.debian_arch}" if foreign else ""))
    return f"{pull}, or where no registry is reachable run `invoke base-image{options}` and build with --base-image {base_tag(suite, target.machine)}"


def suite_for(target: Target) -> str | None:
    """The Debian suite whose python3 and glibc are exactly the target's, if any."""
    for suite, python in SUITE_PYTHON.items():
        if python == target.python_version and SUITE_GLIBC[suite] == target.glibc:
            return suite
    return None


def probe(docker: Docker, image: str, cache: Path | None = None, image_id: str | None = None) -> dict[str, Any]:
    """The interpreter of an image (version, machine, glibc, path) and its wheelpipe role;
    `image_id`, when the caller has just looked it up.

    An image id names immutable content, labels included, so a probe cached under it never
    goes stale; the cache spares every image build a container start.
    """
    image_id = image_id or (docker.image_id(image) if cache else None)
    known = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    if image_id in known and "role" in known[image_id]:
        cached: dict[str, Any] = known[image_id]
        return cached
    found: dict[str, Any] = json.loads(docker.python(image, _PROBE).strip().splitlines()[-1])
    found["role"] = _labels(docker, image).get(ROLE_LABEL, "")
    if cache and image_id:
        write_atomic(cache, json.dumps({**known, image_id: found}, indent=2, sort_keys=True) + "\n")
    return found


def _labels(docker: Docker, image: str) -> dict[str, str]:
    found = docker.run("image", "inspect", "--format", "{{json .Config.Labels}}", image, what=f"inspecting {image}")
    return json.loads(found.stdout.strip() or "null") or {}


def check_matches_target(docker: Docker, image: str, target: Target, cache: Path | None = None, image_id: str | None = None) -> dict[str, Any]:
    """Wheels for the target must run on the image: same Python, glibc at least the target's.

    A builder image is refused: runtime images start from the base it was made from.
    """
    found = probe(docker, image, cache, image_id)
    if found.get("role") == BUILDER_ROLE:
        msg = f"base image {image} is a builder image (it carries a compiler and headers); runtime images start from the base image it was made from"
        raise TargetError(msg)
    _check_interpreter(found, image, "base image", target)
    return found


def check_builds_for_target(docker: Docker, image: str, target: Target) -> dict[str, Any]:
    """A builder must run the target's wheels (its build requirements) and build for the
    target: same Python and machine, and exactly the target's glibc, since an extension
    compiled against a newer glibc may not load on the target."""
    found = probe(docker, image)
    _check_interpreter(found, image, "builder image", target)
    major, minor = found["glibc"].split(".")[:2]
    target.check_runs_like(found["python"], found["machine"], (int(major), int(minor)), f"builder image {image}")
    return found


def _check_interpreter(found: dict[str, Any], image: str, kind: str, target: Target) -> None:
    problems = []
    if found["python"] != target.python_version:
        problems.append(f"Python {found['python']} (target wants {target.python_version})")
    if found["machine"] != target.machine:
        problems.append(f"{found['machine']} (target wants {target.machine})")
    glibc = tuple(int(x) for x in found["glibc"].split(".")[:2]) if found["glibc"] else None
    if glibc is None or glibc < target.glibc:
        problems.append(f"glibc {found['glibc'] or 'none'} (target wheels need {target.glibc[0]}.{target.glibc[1]} or newer)")
    if problems:
        msg = f"{kind} {image} does not match the target {target.describe()}: {'; '.join(problems)}"
        raise TargetError(msg)


def _check_suite(suite: str, target: Target) -> None:
    wanted = SUITE_PYTHON.get(suite)
    if wanted != target.python_version:
        msg = f"Debian {suite} ships Python {wanted or 'unknown'} as python3, but the target is {target.describe()}; choose a matching suite"
        raise TargetError(msg)


def bootstrap(docker: Docker, target: Target, tag: str | None, suite: str, force: bool) -> str:
    """Build and import the base image (default tag: base_tag(suite)); return its tag.
    Reuses an existing image unless forced."""
    _check_suite(suite, target)
    tag = tag or base_tag(suite, target.machine)
    docker.require_engine()
    emulation.require_runs(target.machine, f"`invoke base-image` for {target.machine}")
    if not force and docker.image_id(tag):
        check_matches_target(docker, tag, target)
        report.info(f"{tag} already exists and matches the target (--force rebuilds it)")
        return tag
    if os.geteuid() != 0:
        msg = "debootstrap needs root: run `invoke base-image` as root (or with sudo)"
        raise DockerError(msg)
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        msg = "debootstrap is not installed; install it (Debian: apt-get install debootstrap)"
        raise DockerError(msg)
    with tempfile.TemporaryDirectory(prefix="wheelpipe-rootfs-") as tmp:
        root = Path(tmp, "rootfs")
        debootstrap = ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", f"--arch={target.debian_arch}"]
        foreign = emulation.is_foreign(target.machine)
        if not foreign:
            report.step(f"bootstrapping Debian {suite} with python3 into a root file system (about a minute)")
            run([*debootstrap, suite, root, MIRROR], what="debootstrap")
        else:
            # Unpacked here, then configured by its own (emulated) programs inside the chroot.
            report.step(f"bootstrapping Debian {suite} for {target.debian_arch} with python3 into a root file system (under qemu: several minutes)")
            run([*debootstrap, "--foreign", suite, root, MIRROR], what=f"debootstrap --foreign for {target.debian_arch}")
            run(["chroot", root, "/debootstrap/debootstrap", "--second-stage"], what=f"debootstrap's second stage under qemu-{target.machine}")
        report.info("applying the suite's updates and security fixes")
        (root / "etc/apt/sources.list").write_text(
            f"deb {MIRROR} {suite} main\ndeb {MIRROR} {suite}-updates main\ndeb {SECURITY_MIRROR} {suite}-security main\n"
        )
        chroot_env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["chroot", root, "apt-get", "-q", "update"], what="apt-get update in the root file system")
        run(["chroot", root, "apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confold", "upgrade"], what="apt-get upgrade", env=chroot_env)
        run(["chroot", root, "apt-get", "clean"], what="apt-get clean")
        report.info("trimming it like Debian's slim images")
        _trim(root)
        report.info(f"importing it as {tag}")
        _import(docker, root, tag, target.docker_platform)
        if foreign:
            docker.set_architecture(tag, target.debian_arch, _VARIANTS.get(target.debian_arch, ""), Path(tmp))
    found = check_matches_target(docker, tag, target)
    report.info(f"{tag}: Python {found['python']} at {found['executable']}, glibc {found['glibc']}")
    return tag


def bootstrap_builder(docker: Docker, target: Target, tag: str | None, suite: str, force: bool) -> str:
    """Make the builder image (default tag: builder_tag(suite)) from the suite's base image,
    bootstrapping the base first when it is missing; return its tag.

    The builder is the base plus BUILDER_PACKAGES, one `docker build` layer on top, so it
    runs the very interpreter the runtime images run. An existing builder is reused unless
    forced or made from another base image than the current one.
    """
    _check_suite(suite, target)
    wanted = SUITE_GLIBC[suite]
    if wanted != target.glibc:
        msg = (
            f"Debian {suite} has glibc {wanted[0]}.{wanted[1]}, but a builder for the target {target.describe()} needs "
            f"glibc {target.glibc[0]}.{target.glibc[1]} (what it compiles must load there); choose a matching suite"
        )
        raise TargetError(msg)
    tag = tag or builder_tag(suite, target.machine)
    base = bootstrap(docker, target, None, suite, False)
    base_id = docker.image_id(base)
    if not force and docker.image_id(tag):
        made_from = _labels(docker, tag).get(BASE_ID_LABEL)
        if made_from == base_id:
            check_builds_for_target(docker, tag, target)
            report.info(f"{tag} already exists, made from {base}, and builds for the target (--force makes it again)")
            return tag
        report.info(f"{tag} was made from another image than the current {base}: making it again")
    report.step(f"making the builder image {tag}: {base} plus {', '.join(BUILDER_PACKAGES)} (apt, about half a minute)")
    dockerfile = (
        "# Never a runtime image: it carries a compiler. Runtime images start from the base itself.\n"
        f"FROM {base}\n"
        "RUN apt-get -q update \\\n"
        f" && DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends {' '.join(BUILDER_PACKAGES)} \\\n"
        " && apt-get clean && rm -rf /var/lib/apt/lists/*\n"
        f'LABEL {ROLE_LABEL}="{BUILDER_ROLE}" {BASE_ID_LABEL}="{base_id}"\n'
    )
    # No build context: the Dockerfile comes on stdin and copies nothing in.
    run(
        [docker.command, "build", "--force-rm", "--platform", target.docker_platform, *(["--no-cache"] if force else []), "--tag", tag, "-"],
        what=f"building the builder image {tag}",
        env=docker.env,
        stdin=dockerfile,
    )
    found = check_builds_for_target(docker, tag, target)
    report.info(f"{tag}: Python {found['python']} at {found['executable']}, glibc {found['glibc']}, with {', '.join(BUILDER_PACKAGES)}")
    return tag


def _trim(root: Path) -> None:
    # Later apt installs in derived images stay slim too.
    (root / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(_SLIM_DPKG)
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*",
                    "usr/share/man/*", "usr/share/groff/*", "usr/share/info/*", "usr/share/lintian/*",
                    "usr/share/linda/*", "usr/share/locale/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "tmp/*"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()
    for path in sorted((root / "usr/share/doc").rglob("*"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif path.name != "copyright":
            path.unlink()
    # Copied from the build host by debootstrap; Docker provides both at run time.
    for name in ("etc/hostname", "etc/resolv.conf"):
        (root / name).unlink(missing_ok=True)


def _import(docker: Docker, root: Path, tag: str, platform: str) -> None:
    changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8", 'CMD ["python3"]']
    argv = [docker.command, "import", "--platform", platform, *(arg for change in changes for arg in ("--change", change)), "-", tag]
    try:
        pipe(["tar", "--numeric-owner", "-C", root, "-c", "."], argv, what=f"docker import of {tag}", env=docker.env)
    except ToolError as error:
        raise DockerError(str(error)) from None
