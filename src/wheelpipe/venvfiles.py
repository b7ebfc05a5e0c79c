"""Every file of an image's venv against the wheels it was installed from.

Names and versions prove which distributions are installed, not what their files hold: a
Dockerfile override can edit an installed `flask/__init__.py`, or drop a `.pth` file (code run
at every interpreter start) into site-packages, and the venv still lists the same
distributions. So each file is compared with the RECORD of the wheel it came from, read from
the wheelhouse's copy of that wheel (whose sha256 the install manifest pins, from the locks),
never with the RECORD installed in the image, which the same override could rewrite. What an
installer makes rather than copies is checked as what it must be: console-script launchers
against the entry points, the venv's own files by name, the tooling's `service` and
`service-health` scripts byte for byte, and bytecode by its header against its source. A
file no wheel and no installer accounts for is reported.

What this does not prove: the code objects inside `.pyc` files (only their header: the
interpreter's magic, checked-hash mode and the hash of the source beside them, when this host
runs the target's interpreter version), and anything outside the venv (the base image's files).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# What `python -m venv --without-pip` and the installer make in every venv, by path.
VENV_OWN_FILES = frozenset(
    PurePosixPath(p) for p in ("pyvenv.cfg", ".lock", "bin/activate", "bin/activate.csh", "bin/activate.fish", "bin/Activate.ps1")
)
VENV_OWN_LINKS = frozenset(PurePosixPath(p) for p in ("lib64", "bin/python", "bin/python3"))
_VERSIONED_PYTHON = re.compile(r"bin/python3\.\d+")
# A pyc's header: magic (4), flags (4), then the source's hash (8) in hash-based mode.
_CHECKED_HASH = 0b11


@dataclass(frozen=True)
class Expected:
    """What a wheel says a venv file holds."""

    wheel: str  # the wheel's file name, for messages
    sha256: str | None  # urlsafe-base64 digest as RECORD writes it; None: checked otherwise
    script: bytes | None = None  # a .data/scripts file: the installer rewrites only its first line


def _record_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _launcher(venv: PurePosixPath, target: str) -> bytes:
    """A console script's launcher as uv writes it (its `module:object.attr` entry point)."""
    module, _, attribute = target.partition(":")
    attribute = attribute.split("[", 1)[0].strip()
    first = attribute.split(".", 1)[0]
    return (
        f"#!{venv}/bin/python\n"
        "# -*- coding: utf-8 -*-\n"
        "import sys\n"
        f"from {module.strip()} import {first}\n"
        'if __name__ == "__main__":\n'
        '    if sys.argv[0].endswith("-script.pyw"):\n'
        "        sys.argv[0] = sys.argv[0][:-11]\n"
        '    elif sys.argv[0].endswith(".exe"):\n'
        "        sys.argv[0] = sys.argv[0][:-4]\n"
        f"    sys.exit({attribute}())\n"
    ).encode()


@dataclass
class Layout:
    """Every venv path the wheels account for, with what it must hold."""

    files: dict[PurePosixPath, Expected]
    launchers: dict[PurePosixPath, tuple[str, bytes]]  # bin/<script> -> (wheel, its bytes)
    records: set[PurePosixPath]  # each dist-info's RECORD, which the installer rewrites


def layout(wheels: list[Path], site_packages: PurePosixPath, venv: PurePosixPath) -> Layout:
    """Where each wheel's files land in the venv (paths relative to it), from the wheel's RECORD."""
    found = Layout({}, {}, set())
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            (record,) = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/RECORD", n)]
            dist_info = record.split("/", 1)[0]
            found.records.add(site_packages / record)
            for row in csv.reader(io.StringIO(archive.read(record).decode("utf-8"))):
                if not row or not row[0] or row[0] == record:
                    continue
                path, digest = row[0], row[1] if len(row) > 1 else ""
                sha256 = digest.removeprefix("sha256=") if digest.startswith("sha256=") else None
                top, _, rest = path.partition("/")
                if top.endswith(".data") and rest:
                    scheme, _, inner = rest.partition("/")
                    if scheme == "scripts":
                        found.files[PurePosixPath("bin") / inner] = Expected(wheel.name, None, archive.read(path))
                    elif scheme in ("purelib", "platlib"):
                        found.files[site_packages / inner] = Expected(wheel.name, sha256)
                    elif scheme == "data":
                        found.files[PurePosixPath(inner)] = Expected(wheel.name, sha256)
                    else:  # headers: include/site/pythonX.Y/<distribution>/
                        found.files[PurePosixPath("include") / "site" / site_packages.parent.name / dist_info.split("-")[0] / inner] = Expected(wheel.name, sha256)
                else:
                    found.files[site_packages / path] = Expected(wheel.name, sha256)
            entry_points = f"{dist_info}/entry_points.txt"
            if entry_points in names:
                section = ""
                for line in archive.read(entry_points).decode("utf-8").splitlines():
                    line = line.strip()
                    if line.startswith("["):
                        section = line.strip("[]").strip()
                    elif "=" in line and section in ("console_scripts", "gui_scripts"):
                        name, _, target = line.partition("=")
                        found.launchers[PurePosixPath("bin") / name.strip()] = (wheel.name, _launcher(venv, target.strip()))
    return found


def differences(  # noqa: C901 - one branch per way a venv file can differ from what the wheels put there
    files: dict[PurePosixPath, bytes], links: set[PurePosixPath], expected: Layout, written: dict[PurePosixPath, bytes]
) -> list[str]:
    """How the venv's files (relative paths, their bytes; its symlinks) differ from what the
    wheels and the tooling (`written`: the scripts it wrote, byte for byte) account for."""
    problems = []
    sources = {path for path in files if path.suffix == ".py"}
    for path in sorted(files):
        data = files[path]
        if path in written:
            if data != written[path]:
                problems.append(f"{path} is not the script the tooling wrote")
        elif path in expected.files:
            want = expected.files[path]
            if want.script is not None:
                if data.partition(b"\n")[2] != want.script.partition(b"\n")[2]:
                    problems.append(f"{path} differs from the script in {want.wheel}")
            elif want.sha256 is not None and _record_digest(data) != want.sha256:
                problems.append(f"{path} differs from {want.wheel} (RECORD sha256={want.sha256}, found {_record_digest(data)})")
        elif path in expected.launchers:
            wheel, launcher = expected.launchers[path]
            if data != launcher:
                problems.append(f"{path} is not the launcher of the entry point {wheel} declares")
        elif path in expected.records or path in VENV_OWN_FILES:
            continue
        elif path.suffix == ".pyc" and path.parent.name == "__pycache__":
            problem = _bytecode_problem(path, data, files, sources)
            if problem:
                problems.append(problem)
        else:
            problems.append(f"{path} is in no wheel's RECORD")
    missing = sorted(p for p in expected.files if p not in files and p not in links)
    problems += [f"{path} of {expected.files[path].wheel} is missing" for path in missing]
    problems += [f"{path} is a symbolic link no wheel makes" for path in sorted(links) if path not in VENV_OWN_LINKS and not _VERSIONED_PYTHON.fullmatch(str(path))]
    return problems


def _bytecode_problem(path: PurePosixPath, data: bytes, files: dict[PurePosixPath, bytes], sources: set[PurePosixPath]) -> str | None:
    """A .pyc is the bytecode of a source a wheel installed, in checked-hash mode, and (when this
    host's interpreter is the image's version) its header's hash is that source's."""
    stem = path.name.split(".", 1)[0]
    source = path.parent.parent / f"{stem}.py"
    if source not in sources:
        return f"{path} is bytecode of no installed source"
    if len(data) < 16 or int.from_bytes(data[4:8], "little") != _CHECKED_HASH:
        return f"{path} is not checked-hash bytecode (the build compiles with SOURCE_DATE_EPOCH set)"
    if data[:4] == importlib.util.MAGIC_NUMBER and data[8:16] != importlib.util.source_hash(files[source]):
        return f"{path} is the bytecode of another source than {source}"
    return None
