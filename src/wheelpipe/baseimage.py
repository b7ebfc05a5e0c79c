"""`invoke base-image`: a python:3.11-slim-bookworm equivalent bootstrapped from Debian packages.

For build hosts that reach no container registry (air-gapped sites, this project's CI):
debootstrap a minimal bookworm with Debian's python3, bring it up to date with the
security suite, trim it like Debian's slim images, and `docker import` it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .console import Reporter, run
from .docker import Docker
from .errors import DockerError, TargetError
from .fsutil import write_atomic
from .target import Target

DEFAULT_TAG = "local/python:3.11-slim-bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# The Python each Debian suite ships as python3: the image must match the target.
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
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


def probe(docker: Docker, image: str, reporter: Reporter, cache: Path | None = None) -> dict:
    """The interpreter of an image: version, machine, glibc, path.

    An image id names immutable content, so a probe cached under it never goes stale;
    the cache spares every image build a container start.
    """
    image_id = docker.image_id(image, reporter) if cache else None
    known = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    if image_id in known:
        return known[image_id]
    found = json.loads(docker.python(image, _PROBE, reporter).strip().splitlines()[-1])
    if cache and image_id:
        write_atomic(cache, json.dumps({**known, image_id: found}, indent=2, sort_keys=True) + "\n")
    return found


def check_matches_target(docker: Docker, image: str, target: Target, reporter: Reporter, cache: Path | None = None) -> dict:
    """Wheels for the target must run on the image: same Python, glibc at least the target's."""
    found = probe(docker, image, reporter, cache)
    problems = []
    if found["python"] != target.python_version:
        problems.append(f"Python {found['python']} (target wants {target.python_version})")
    if found["machine"] != target.machine:
        problems.append(f"{found['machine']} (target wants {target.machine})")
    glibc = tuple(int(x) for x in found["glibc"].split(".")[:2]) if found["glibc"] else None
    if glibc is None or glibc < target.glibc:
        problems.append(f"glibc {found['glibc'] or 'none'} (target wheels need {target.glibc[0]}.{target.glibc[1]} or newer)")
    if problems:
        msg = f"base image {image} does not match the target {target.describe()}: {'; '.join(problems)}"
        raise TargetError(msg)
    return found


def bootstrap(docker: Docker, target: Target, tag: str, suite: str, force: bool, reporter: Reporter) -> str:
    """Build and import the base image; return its tag. Reuses an existing image unless forced."""
    wanted = SUITE_PYTHON.get(suite)
    if wanted != target.python_version:
        msg = f"Debian {suite} ships Python {wanted or 'unknown'} as python3, but the target is {target.describe()}; choose a matching suite"
        raise TargetError(msg)
    docker.require_engine(reporter)
    if not force and docker.image_id(tag, reporter):
        check_matches_target(docker, tag, target, reporter)
        reporter.info(f"{tag} already exists and matches the target (--force rebuilds it)")
        return tag
    if os.geteuid() != 0:
        msg = "debootstrap needs root: run `invoke base-image` as root (or with sudo)"
        raise DockerError(msg)
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        msg = "debootstrap is not installed; install it (Debian: apt-get install debootstrap)"
        raise DockerError(msg)
    with tempfile.TemporaryDirectory(prefix="wheelpipe-rootfs-") as tmp:
        root = Path(tmp, "rootfs")
        reporter.step(f"bootstrapping Debian {suite} with python3 into a root file system (about a minute)")
        run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv", suite, root, MIRROR], reporter=reporter, what="debootstrap")
        reporter.info("applying the suite's updates and security fixes")
        (root / "etc/apt/sources.list").write_text(
            f"deb {MIRROR} {suite} main\ndeb {MIRROR} {suite}-updates main\ndeb {SECURITY_MIRROR} {suite}-security main\n"
        )
        chroot_env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["chroot", root, "apt-get", "-q", "update"], reporter=reporter, what="apt-get update in the root file system")
        run(["chroot", root, "apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confold", "upgrade"], reporter=reporter, what="apt-get upgrade", env=chroot_env)
        run(["chroot", root, "apt-get", "clean"], reporter=reporter, what="apt-get clean")
        reporter.info("trimming it like Debian's slim images")
        _trim(root)
        reporter.info(f"importing it as {tag}")
        _import(docker, root, tag, reporter)
    found = check_matches_target(docker, tag, target, reporter)
    reporter.info(f"{tag}: Python {found['python']} at {found['executable']}, glibc {found['glibc']}")
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


def _import(docker: Docker, root: Path, tag: str, reporter: Reporter) -> None:
    changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8", 'CMD ["python3"]']
    argv = [docker.command, "import", *(arg for change in changes for arg in ("--change", change)), "-", tag]
    reporter.command(argv, None)
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(argv, stdin=tar.stdout, capture_output=True, text=True, check=False)
    tar.stdout.close()
    if tar.wait() != 0 or imported.returncode != 0:
        msg = f"docker import of {tag} failed: {imported.stderr.strip() or 'tar failed'}"
        raise DockerError(msg)
