"""`invoke publish`: upload the wheelhouse's first-party wheels to a package index with twine.

What is uploaded is exactly what the wheelhouse verified (the wheels its manifest records as
"built" here), so an index's file carries the same sha256 as every install manifest pins.

Where to and as whom come only from twine's own configuration: TWINE_REPOSITORY_URL or
TWINE_REPOSITORY (a section of ~/.pypirc), TWINE_USERNAME / TWINE_PASSWORD, ~/.pypirc or a
keyring. This module passes nothing secret on a command line and prints no secret; the
`--repository-url` option only overrides the URL. With no index configured at all it stops,
rather than letting twine fall back to the public PyPI with internal packages.

Each wheel is uploaded by its own `twine upload --non-interactive`, so a refusal names the
file. A version the index already has is an error (a published file is never replaced), or,
with skip_existing, a reported skip. twine's own --skip-existing only works against PyPI, and
pypiserver refuses a re-upload with 400 (not 409), so the index's answer is read here.
"""

from __future__ import annotations

import configparser
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .console import Reporter
from .errors import PublishError
from .tools import CompletedProcess, redact, run
from .wheelhouse import WHEELHOUSE, BuiltOrigin, Entry, Wheelhouse

PUBLIC_PYPI = "https://upload.pypi.org/legacy/"
PUBLIC_TESTPYPI = "https://test.pypi.org/legacy/"
PYPIRC = "~/.pypirc"
HOW_TO_CONFIGURE = (
    "set TWINE_REPOSITORY_URL to the index's upload URL (with TWINE_USERNAME and TWINE_PASSWORD), "
    "or pass --repository-url URL, or set TWINE_REPOSITORY to a section of ~/.pypirc"
)
# What indexes answer when the file is already there (the answers twine's own --skip-existing
# knows, plus pypiserver's 400 "already exists!").
_EXISTS = re.compile(r"already exist|overwrite artifact|updating asset|cannot be updated", re.IGNORECASE)
_HTTP_ERROR = re.compile(r"HTTPError: (\d{3})\b")


@dataclass
class Published:
    url: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = f"published {len(self.uploaded)} wheel(s) to {self.url}"
        if self.skipped:
            line += f"; skipped {len(self.skipped)} already there: {', '.join(self.skipped)}"
        return line


def first_party_wheels(house: Wheelhouse) -> list[Entry]:
    wheels = sorted((e for e in house.entries.values() if isinstance(e.origin, BuiltOrigin)), key=lambda e: e.file)
    if not wheels:
        msg = f"{WHEELHOUSE}/: no first-party wheels to publish; run `invoke build-wheels`"
        raise PublishError(msg)
    return wheels


def secrets(environ: dict[str, str] | os._Environ) -> tuple[str, ...]:
    """What must never be shown (tools.redact also strips user:password@ from URLs)."""
    password = environ.get("TWINE_PASSWORD")
    return (password,) if password else ()


def index_url(repository_url: str | None, environ: dict[str, str] | os._Environ) -> str:
    """The upload URL twine will use, resolved as twine does, for messages (and to refuse none).

    Raises when nothing names an index: twine would silently fall back to the public PyPI.
    """
    if repository_url:
        return repository_url
    if environ.get("TWINE_REPOSITORY_URL"):
        return environ["TWINE_REPOSITORY_URL"]
    pypirc = Path(os.path.expanduser(PYPIRC))
    config = configparser.RawConfigParser()
    try:
        config.read(pypirc)
    except configparser.Error as error:
        msg = f"{pypirc}: unreadable ({error.__class__.__name__}); fix it, or {HOW_TO_CONFIGURE}"
        raise PublishError(msg) from None
    name = environ.get("TWINE_REPOSITORY")
    if name:
        if config.has_option(name, "repository"):
            return config.get(name, "repository")
        defaults = {"pypi": PUBLIC_PYPI, "testpypi": PUBLIC_TESTPYPI}
        if name in defaults:
            return defaults[name]
        msg = f"TWINE_REPOSITORY={name} names no section with a `repository` URL in {pypirc}; add one, or {HOW_TO_CONFIGURE}"
        raise PublishError(msg)
    # twine's default repository is the [pypi] section: used only when it names its own URL.
    if config.has_option("pypi", "repository"):
        return config.get("pypi", "repository")
    msg = f"no package index configured for `invoke publish` (refusing twine's default, the public PyPI): {HOW_TO_CONFIGURE}"
    raise PublishError(msg)


def _twine(args: list[str], reporter: Reporter, repository_url: str | None = None) -> CompletedProcess[str]:
    """Run twine from this interpreter; its output is returned, echoed (redacted) with --verbose.

    An overriding URL goes to twine as TWINE_REPOSITORY_URL, not on its command line, where
    credentials in it would show in the process list.
    """
    argv = [sys.executable, "-m", "twine", "--no-color", *args]
    # A wide terminal keeps twine's (rich) messages on one line each, so they can be read.
    env = {"COLUMNS": "400"}
    if repository_url:
        env["TWINE_REPOSITORY_URL"] = repository_url
    return run(argv, reporter=reporter, what=f"twine {args[0]}", env=env, check=False, secrets=secrets(os.environ))


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    found = (errors or lines or ["no output"])[-1]
    return re.sub(r"^ERROR\s+", "", found)


def check(wheels: list[Path], reporter: Reporter) -> None:
    """`twine check --strict`: the metadata an index will show renders, and nothing is warned about."""
    reporter.step(f"checking {len(wheels)} first-party wheel(s) with twine check --strict")
    result = _twine(["check", "--strict", *map(str, wheels)], reporter)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        failed = [w.name for w in wheels if re.search(rf"{re.escape(w.name)}: (FAILED|PASSED with warnings)", output)]
        which = ", ".join(failed) or ", ".join(w.name for w in wheels)
        msg = f"twine check --strict refused {which}: {_last_error(output)}"
        raise PublishError(msg)


def publish(house: Wheelhouse, *, repository_url: str | None = None, skip_existing: bool = False, reporter: Reporter) -> Published:
    """Check, then upload each first-party wheel; refuse (or skip) a file the index already has."""
    environ = os.environ
    url = redact(index_url(repository_url, environ), secrets(environ))
    wheels = first_party_wheels(house)
    check([house.path / e.file for e in wheels], reporter)
    reporter.step(f"publishing {len(wheels)} first-party wheel(s) to {url}")
    result = Published(url)
    upload = ["upload", "--non-interactive", "--disable-progress-bar", "--verbose"]
    for entry in wheels:
        answer = _twine([*upload, str(house.path / entry.file)], reporter, repository_url)
        if answer.returncode == 0:
            reporter.info(f"uploaded {entry.file} (sha256 {entry.sha256})")
            result.uploaded.append(entry.file)
            continue
        output = answer.stdout + answer.stderr
        status = _HTTP_ERROR.search(output)
        code = int(status.group(1)) if status else None
        if code == 409 or (code in (400, 403) and _EXISTS.search(output)):
            if skip_existing:
                reporter.info(f"skipped {entry.file}: {entry.name} {entry.version} is already on {url}")
                result.skipped.append(entry.file)
                continue
            msg = (
                f"{entry.file}: {entry.name} {entry.version} is already on {url} and a published file is never "
                f"replaced; bump the version in its pyproject.toml, or pass --skip-existing to skip it"
            )
            raise PublishError(msg)
        if code in (401, 403):
            msg = f"the index refused the credentials for {url} (HTTP {code} uploading {entry.file}); check TWINE_USERNAME / TWINE_PASSWORD or ~/.pypirc"
            raise PublishError(msg)
        if "NonInteractive" in output or "Credential not found" in output:
            msg = f"no credentials for {url}: set TWINE_USERNAME and TWINE_PASSWORD (or add them to ~/.pypirc)"
            raise PublishError(msg)
        if "ConnectionError" in output or "NewConnectionError" in output or "NameResolutionError" in output:
            msg = f"cannot reach the package index at {url} (uploading {entry.file}); is it running, is the URL right?"
            raise PublishError(msg)
        msg = f"uploading {entry.file} to {url} failed: {redact(_last_error(output), secrets(environ))}"
        raise PublishError(msg)
    return result
