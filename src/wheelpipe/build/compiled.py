"""First-party wheels that hold compiled code: built where the target's interpreter is,
checked against the target's manylinux policy, tagged for it and made byte-stable.

A backend tags what it compiles for the interpreter and machine that ran it
(cp311-cp311-linux_x86_64). A first-party wheel that is not pure (its WHEEL says
Root-Is-Purelib: false, or its tags are not py*-none-any) is built again in the target's
builder container when this host is not the target: the same choice, and the same
containers, as an sdist build (runner.where_to_build, environment.run_backend). auditwheel's
analysis (`auditwheel show --json`) then says which manylinux policies its shared objects
satisfy: the external libraries they link, the glibc symbol versions they use. A wheel the
target's policy allows is retagged for the target's platform (WHEEL Tag lines, file name,
RECORD) and rewritten canonically (sdists.normalize_wheel). One that would need a library
grafted in (what `auditwheel repair` does, which needs patchelf and changes the binaries),
or a newer glibc than the target's, is refused in one line naming the library or version;
so is a wheel that says it is pure Python but holds a binary. A third-party wheel built here
from its sdist gets the same check and tag (checked_for_target).
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import importlib.util
import json
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.tags import Tag

from ..errors import ToolError, WheelhouseError
from ..lockfile import parse_pins
from ..model import Package, Repository
from ..requirements import BUILD_LOCK, TOOLING_LOCK
from ..target import Target
from ..tools import run
from . import environment, firstparty, runner, sdists

# What makes the build of a first-party package need the target's interpreter.
_HOW = "with its compiled code"
_ELF_MAGIC = b"\x7fELF"
_PURE_TAG = re.compile(r"^py\d*-none-any$")
_GLIBC_VERSION = re.compile(r"^GLIBC_(\d+)\.(\d+)")
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")


@dataclass(frozen=True)
class WheelFile:
    """A wheel's .dist-info/WHEEL: what it says of its own purity and tags."""

    dist_info: str  # "name-1.0.dist-info"
    root_is_purelib: bool
    tags: tuple[str, ...]
    text: str

    @classmethod
    def read(cls, wheel: Path) -> WheelFile:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/WHEEL")]
            if len(names) != 1:
                msg = f"{wheel.name}: expected one .dist-info/WHEEL, found {len(names)}"
                raise WheelhouseError(msg)
            text = archive.read(names[0]).decode("utf-8")
        headers = email.parser.Parser().parsestr(text, headersonly=True)
        return cls(names[0].split("/")[0], (headers.get("Root-Is-Purelib") or "").strip().lower() == "true", tuple(headers.get_all("Tag") or ()), text)

    @property
    def pure(self) -> bool:
        return self.root_is_purelib and all(_PURE_TAG.match(tag) for tag in self.tags)


def for_target(
    repo: Repository, target: Target, package: Package, source: firstparty.FileSource, built: firstparty.BuiltWheel, epoch: int, workdir: Path
) -> Path:
    """The wheel to keep of `built`, built on this host: itself when pure; else built where
    the target's interpreter is, checked against the target's manylinux policy and tagged for it."""
    described = WheelFile.read(built.path)
    if described.pure:
        binary = _first_elf(built.path)
        if binary is None:
            return built.path
        # Not analysed, not tagged, and installed on any platform: a prebuilt binary slipped in.
        msg = (
            f"{package.label}: {built.path.name} says it is pure Python (Root-Is-Purelib: true, tags {', '.join(described.tags)}) "
            f"but holds compiled code ({binary}); have its backend build a platform wheel, so that it is built and checked for the target"
        )
        raise WheelhouseError(msg)
    where = runner.where_to_build(package.label, _HOW, target, runner.BuilderSettings.from_environment())
    wheel = built.path
    if isinstance(where, runner.InContainer):
        pins = parse_pins(repo.root / BUILD_LOCK, BUILD_LOCK)  # the build environment on this host checked it
        rebuilt = firstparty.build_wheel_in(where, package, source, epoch, workdir / "in-builder", environment.BuildLock(pins, repo.indexes, target))
        if rebuilt.source_sha256 != built.source_sha256:
            msg = f"{package.label}: its files changed while it was being built; run the command again"
            raise ToolError(msg)
        wheel = rebuilt.path
    return checked_for_target(wheel, target, package.label, epoch)


def checked_for_target(wheel: Path, target: Target, subject: str, epoch: int) -> Path:
    """A wheel just built here, in place: when it holds compiled code for the target's
    interpreter, checked against the target's manylinux policy and retagged for its platform
    (the file renamed); otherwise as it is. First-party wheels and wheels built from
    third-party sdists alike: what a build links comes from the host or builder, which the
    target's runtime image need not have."""
    described = WheelFile.read(wheel)
    if described.pure or not _for_targets_interpreter(described, target):
        return wheel  # pure, or built for another interpreter: the target check names it as built
    audit(wheel, target, subject)
    with tempfile.TemporaryDirectory(prefix=".retag-", dir=wheel.parent) as tmp:
        tagged = retag(wheel, target, epoch, Path(tmp))
        final = wheel.parent / tagged.name
        tagged.replace(final)
    if final != wheel:
        wheel.unlink()
    return final


def _for_targets_interpreter(described: WheelFile, target: Target) -> bool:
    """Whether some tag of the wheel, on the target's platform, is one the target accepts."""
    accepted = target.accepts()
    for tag in described.tags:
        interpreter, abi, _ = tag.split("-", 2)
        if Tag(interpreter, abi, target.platform) in accepted:
            return True
    return False


def audit(wheel: Path, target: Target, subject: str) -> None:
    """Refuse, in one line, a wheel whose shared objects the target's manylinux policy does not
    allow: an external library outside the policy, a glibc symbol version newer than the
    target's, a blacklisted symbol or instructions beyond the target's baseline."""
    if _first_elf(wheel) is None:
        return  # impure by its own say, but nothing compiled: nothing to load on the target
    if importlib.util.find_spec("auditwheel") is None:
        msg = f"{subject}: {wheel.name} holds compiled code, which auditwheel checks against the target's manylinux policy, but auditwheel is not installed in {sys.prefix}; install the tooling lock ({TOOLING_LOCK})"
        raise ToolError(msg)
    shown = run([sys.executable, "-m", "auditwheel", "show", "--json", wheel], what=f"{subject}: auditwheel show {wheel.name}")
    try:
        analysis = json.loads(shown.stdout)
        overall = str(analysis["overall_tag"])
    except (ValueError, KeyError, TypeError):
        msg = f"{subject}: auditwheel show --json gave no analysis of {wheel.name} ({shown.stdout.strip()[:200] or 'no output'})"
        raise ToolError(msg) from None
    allowed = _MANYLINUX.match(overall)
    if allowed and allowed[3] == target.machine and (int(allowed[1]), int(allowed[2])) <= target.glibc:
        return
    raise WheelhouseError(f"{subject}: {wheel.name} {_why_not(analysis, target)}")


def _why_not(analysis: dict[str, Any], target: Target) -> str:
    """What keeps the wheel from the target's policy, from auditwheel's analysis: the first of
    an external library, a blacklisted symbol, a glibc symbol version, the instruction set."""
    upgrade = analysis.get("policy_upgrades", {}).get(target.platform, {})
    if libraries := upgrade.get("libs_to_eliminate"):
        return (
            f"links {', '.join(sorted(libraries))}, a shared library outside the target's manylinux policy {target.platform} "
            "(a system it covers need not have it); link it statically or drop it (wheelpipe does not graft libraries into wheels, as auditwheel repair does)"
        )
    if blacklisted := upgrade.get("blacklisted_symbols"):
        found = "; ".join(f"{library}: {', '.join(symbols)}" for library, symbols in sorted(blacklisted.items()))
        return f"uses symbols the target's manylinux policy {target.platform} forbids ({found})"
    symbols = _MANYLINUX.match(str(analysis.get("sym_tag")))
    if not symbols or (int(symbols[1]), int(symbols[2])) > target.glibc:
        newest = {library: max(names, key=_version_key) for library, names in sorted(analysis.get("versioned_symbols", {}).items()) if names}
        glibc = [(int(m[1]), int(m[2])) for name in newest.values() if (m := _GLIBC_VERSION.match(name))]
        if glibc and max(glibc) > target.glibc:
            return (
                f"uses glibc symbol versions up to GLIBC_{max(glibc)[0]}.{max(glibc)[1]}, newer than the target's glibc "
                f"{target.glibc[0]}.{target.glibc[1]} ({target.platform}); build it where the glibc is the target's"
            )
        found = ", ".join(f"{library} {name}" for library, name in newest.items())
        return f"uses symbol versions ({found}) that auditwheel finds consistent with {analysis.get('sym_tag')} at best, not with the target's {target.platform}"
    if analysis.get("unsupported_isa"):
        return f"uses instructions beyond the {target.machine} baseline of the target's manylinux policy {target.platform}"
    return f"is consistent with {analysis.get('overall_tag')} by auditwheel's analysis, not with the target's {target.platform}"


def _version_key(name: str) -> tuple[int, ...]:
    """GLIBCXX_3.4.30 -> (3, 4, 30): symbol versions compare by their numbers."""
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _first_elf(wheel: Path) -> str | None:
    """The first member of the wheel that is an ELF file (a shared object, an executable)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if not info.is_dir():
                with archive.open(info) as stream:
                    if stream.read(4) == _ELF_MAGIC:
                        return info.filename
    return None


def retag(wheel: Path, target: Target, epoch: int, destination: Path) -> Path:
    """The wheel with every linux or manylinux platform tag of its machine replaced by the
    target's platform (WHEEL Tag lines, file name, RECORD), rewritten canonically into
    `destination`. Tags for another platform are left as they are, for the target check to judge."""
    described = WheelFile.read(wheel)
    ours = f"_{target.machine}"
    if not described.tags or not all(tag.rsplit("-", 1)[-1].startswith(("linux_", "manylinux")) and tag.endswith(ours) for tag in described.tags):
        final = destination / wheel.name
        sdists.normalize_wheel(wheel, final, epoch)
        return final
    tags = list(dict.fromkeys(f"{tag.rsplit('-', 1)[0]}-{target.platform}" for tag in described.tags))
    lines = [line for line in described.text.splitlines() if not line.startswith("Tag:")]
    # Tag lines go where the first one was, as the backend wrote them.
    first = next(i for i, line in enumerate(described.text.splitlines()) if line.startswith("Tag:"))
    lines[first:first] = [f"Tag: {tag}" for tag in tags]
    wheel_text = ("\n".join(lines) + "\n").encode()
    name = f"{wheel.name[: -len('.whl')].rsplit('-', 1)[0]}-{target.platform}.whl"
    wheel_member = f"{described.dist_info}/WHEEL"
    record_member = f"{described.dist_info}/RECORD"
    digest = base64.urlsafe_b64encode(hashlib.sha256(wheel_text).digest()).rstrip(b"=").decode()
    retagged = destination / f".{name}.retagged"
    with zipfile.ZipFile(wheel) as original, zipfile.ZipFile(retagged, "w") as rewritten:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == wheel_member:
                data = wheel_text
            elif info.filename == record_member:
                rows = data.decode("utf-8").splitlines()
                data = "".join(f"{wheel_member},sha256={digest},{len(wheel_text)}\n" if row.startswith(f"{wheel_member},") else f"{row}\n" for row in rows).encode()
            rewritten.writestr(info, data)
    final = destination / name
    try:
        sdists.normalize_wheel(retagged, final, epoch)
    finally:
        retagged.unlink(missing_ok=True)
    return final
