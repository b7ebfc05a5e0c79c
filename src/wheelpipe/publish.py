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

An index's "accepted" proves nothing about what it then gives out: an index or a proxy in
front of it may list or serve other bytes. So the index's Simple API is read (index.py, the
client build-wheels downloads with): before uploading, a file it already holds with other
bytes than the install manifests pin stops the publish, skipped or not, before anything is
uploaded; after uploading, every uploaded and skipped file must be listed with the pinned
sha256 and served as exactly those bytes. The Simple API's root is derived from the upload
URL (`<upload URL>/simple/`, pypi.org's and test.pypi.org's own) unless given; the index's
credentials are sent there only when it is on the upload URL's host.

`twine check` is also here, for `invoke release` too: one seam for twine. What it finds is
typed (MetadataFinding), per wheel and field. An error (a description that would not render)
stops both; a warning (no or an empty long_description, no content type) is the publish
step's choice: refused when the index is public (pypi.org, test.pypi.org) or with --strict,
since a public index shows that page to everyone; shown and let through otherwise, since a
team's own registry or a wheelhouse release shows no project page.
"""

from __future__ import annotations

import configparser
import contextlib
import email.parser
import os
import re
import sys
import urllib.parse
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import index
from .console import report
from .errors import PackageIndexError, PublishError
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
# The indexes whose project pages everyone sees: publishing there checks metadata strictly.
PUBLIC_INDEX_HOSTS = ("pypi.org", "pypi.python.org", "testpypi.python.org")
# twine check's report: a "Checking <file>: <status>" line per file, then its messages, each
# starting with its level, continued on indented lines.
_CHECKING = re.compile(r"^Checking (?P<file>.+?):(?: (?P<status>PASSED with warnings|PASSED|FAILED due to warnings|FAILED))?\s*$")
_MESSAGE = re.compile(r"^(?P<level>WARNING|ERROR)\s+(?P<text>.*)$")
_FIELD = re.compile(r"^`(?P<field>\w+)`\s+(?P<rest>.*)$")


@dataclass
class Published:
    url: str
    simple: str  # the Simple API root every file was verified on
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = f"published {len(self.uploaded)} wheel(s) to {self.url}"
        if self.skipped:
            line += f"; skipped {len(self.skipped)} already there: {', '.join(self.skipped)}"
        return line + f"; {self.simple} lists and serves each with the sha256 the install manifests pin"


def first_party_wheels(house: Wheelhouse) -> list[Entry]:
    wheels = sorted((e for e in house.entries.values() if isinstance(e.origin, BuiltOrigin)), key=lambda e: e.file)
    if not wheels:
        msg = f"{WHEELHOUSE}/: no first-party wheels to publish; run `invoke build-wheels`"
        raise PublishError(msg)
    return wheels


def secrets(environ: Mapping[str, str]) -> tuple[str, ...]:
    """What must never be shown (tools.redact also strips user:password@ from URLs)."""
    password = environ.get("TWINE_PASSWORD")
    return (password,) if password else ()


def index_url(repository_url: str | None, environ: Mapping[str, str]) -> str:
    """The upload URL twine will use, resolved as twine does, for messages (and to refuse none).

    Raises when nothing names an index: twine would silently fall back to the public PyPI.
    """
    if repository_url:
        return repository_url
    from_environment = environ.get("TWINE_REPOSITORY_URL")
    if from_environment:
        return from_environment
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


# Where each public index's Simple API is, by the host its uploads go to.
_PUBLIC_SIMPLE = {
    "upload.pypi.org": "https://pypi.org/simple/",
    "pypi.org": "https://pypi.org/simple/",
    "pypi.python.org": "https://pypi.org/simple/",
    "test.pypi.org": "https://test.pypi.org/simple/",
    "testpypi.python.org": "https://test.pypi.org/simple/",
}


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int | None]:
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _without_userinfo(parts: urllib.parse.SplitResult) -> urllib.parse.SplitResult:
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))


def simple_root(upload_url: str) -> str:
    """Where an index whose uploads go to `upload_url` publishes its Simple API: pypi.org's and
    test.pypi.org's own; else beside a Warehouse-style `/legacy/` endpoint, or under the upload
    URL (pypiserver, Nexus, Artifactory, GitLab and Gitea all serve `<upload URL>/simple/`)."""
    parts = urllib.parse.urlsplit(upload_url)
    public = _PUBLIC_SIMPLE.get((parts.hostname or "").lower())
    if public:
        return public
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    path = path.removesuffix("legacy/")
    return urllib.parse.urlunsplit(_without_userinfo(parts)._replace(path=path + "simple/", query="", fragment=""))


@dataclass(frozen=True)
class SimpleIndex:
    """The Simple API the published files are read back from, and how to read it."""

    root: str  # no credentials in it: they go in a header, to its own host only
    auth: index.Credentials | None

    def credentials_for(self, url: str) -> index.Credentials | None:
        # A file may be served from another host (a CDN): it gets no credentials.
        same = _origin(urllib.parse.urlsplit(url)) == _origin(urllib.parse.urlsplit(self.root))
        return self.auth if same else None

    def page(self, entry: Entry) -> str:
        return index.project_page(self.root, entry.name)

    def listed(self, entry: Entry, url: str) -> index.IndexFile | None:
        """The index's file of that name for the entry's project, if it lists one."""
        try:
            files = index.project_files(self.root, entry.name, self.credentials_for(self.root)) or []
        except PackageIndexError as error:
            if error.status in (401, 403) and self.auth is not None:
                msg = f"the index refused the credentials for {url} (HTTP {error.status} reading {self.page(entry)}); check TWINE_USERNAME / TWINE_PASSWORD or ~/.pypirc"
            elif error.status in (401, 403):
                msg = f"{self.page(entry)}: the index wants credentials to read it (HTTP {error.status}); set TWINE_USERNAME / TWINE_PASSWORD or a ~/.pypirc section's (a keyring's are not read)"
            else:
                msg = f"reading what the index holds of {entry.file}: {error}; if its Simple API is elsewhere, pass --simple-url"
            raise PublishError(msg) from None
        return next((f for f in files if f.filename == entry.file), None)

    def other_bytes(self, entry: Entry, file: index.IndexFile) -> str | None:
        """How the index's file differs from the wheel the install manifests pin; None when
        it lists and serves exactly that wheel's bytes."""
        if file.sha256 is not None and file.sha256.lower() != entry.sha256:
            return f"lists it with sha256 {file.sha256.lower()}"
        try:
            served = index.served_sha256(file, self.credentials_for(file.url))
        except PackageIndexError as error:
            return f"lists it, but serving it failed ({error})"
        if served != entry.sha256:
            listed = f"lists it with sha256 {file.sha256}, but " if file.sha256 else "lists it with no sha256, and "
            return f"{listed}serves bytes with sha256 {served}"
        return None


def simple_index(raw_url: str, simple_url: str | None, environ: Mapping[str, str]) -> SimpleIndex:
    """The Simple API of the index at `raw_url` (the upload URL, credentials and all), with the
    credentials twine uploads with when it is on the same host: the URL's own, else
    TWINE_USERNAME / TWINE_PASSWORD, else the ~/.pypirc section's."""
    upload = urllib.parse.urlsplit(raw_url)
    root = urllib.parse.urlsplit(simple_url or simple_root(raw_url))
    if root.scheme not in ("http", "https") or not root.hostname:
        msg = f"--simple-url {redact(simple_url or '', secrets(environ))!r}: expected the http(s) URL of the index's Simple API (e.g. https://index.example/simple/)"
        raise PublishError(msg)
    auth: index.Credentials | None = None
    if root.username is not None:
        auth = (urllib.parse.unquote(root.username), urllib.parse.unquote(root.password or ""))
    elif _origin(root) == _origin(upload):
        auth = _upload_credentials(upload, environ)
    return SimpleIndex(urllib.parse.urlunsplit(_without_userinfo(root)), auth)


def _upload_credentials(upload: urllib.parse.SplitResult, environ: Mapping[str, str]) -> index.Credentials | None:
    if upload.username is not None:
        return urllib.parse.unquote(upload.username), urllib.parse.unquote(upload.password or "")
    username, password = environ.get("TWINE_USERNAME"), environ.get("TWINE_PASSWORD")
    if not (username and password):
        config = configparser.RawConfigParser()
        with contextlib.suppress(configparser.Error):
            config.read(Path(os.path.expanduser(PYPIRC)))
        section = environ.get("TWINE_REPOSITORY") or "pypi"
        username = username or (config.get(section, "username") if config.has_option(section, "username") else None)
        password = password or (config.get(section, "password") if config.has_option(section, "password") else None)
    return (username, password) if username and password else None


def _twine(args: list[str], repository_url: str | None = None, cwd: Path | None = None) -> CompletedProcess[str]:
    """Run twine from this interpreter; its output is returned, echoed (redacted) with --verbose.

    An overriding URL goes to twine as TWINE_REPOSITORY_URL, not on its command line, where
    credentials in it would show in the process list.
    """
    argv = [sys.executable, "-m", "twine", "--no-color", *args]
    # A wide terminal keeps twine's (rich) messages on one line each, so they can be read.
    env = {"COLUMNS": "400"}
    if repository_url:
        env["TWINE_REPOSITORY_URL"] = repository_url
    return run(argv, what=f"twine {args[0]}", cwd=cwd, env=env, check=False, secrets=secrets(os.environ))


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    found = (errors or lines or ["no output"])[-1]
    return re.sub(r"^ERROR\s+", "", found)


def is_public_index(url: str) -> bool:
    """Whether `url` uploads to the public PyPI or TestPyPI."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return host in PUBLIC_INDEX_HOSTS or host.endswith(".pypi.org")


@dataclass(frozen=True)
class MetadataFinding:
    """One thing `twine check` says of a wheel's metadata, as an index would render it."""

    wheel: str  # the wheel's file name
    field: str  # twine's (setuptools') name of the field: long_description, long_description_content_type
    problem: str  # what is wrong with it: "missing", "empty", "has markup errors ..."
    error: bool  # twine check fails on it even without --strict: the description would not render

    def __str__(self) -> str:
        return f"{self.field} {self.problem}"


def _description_state(wheel: Path) -> str:
    """twine says "missing" both when no readme was declared and when the one declared is
    empty: "empty" when the wheel's METADATA shows a readme was declared (a content type, or
    a description of blanks), else "missing"."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8", "replace"))
    except (OSError, zipfile.BadZipFile, StopIteration):
        return "missing"
    body = metadata.get_payload()
    declared = any(metadata.get(key) is not None for key in ("Description", "Description-Content-Type")) or (isinstance(body, str) and body != "")
    return "empty" if declared else "missing"


def _finding(wheel: Path, level: str, text: str, details: list[str]) -> MetadataFinding:
    found = _FIELD.match(text)
    name, rest = (found["field"], found["rest"]) if found else ("metadata", text)
    if rest.startswith("missing. defaulting to"):
        problem = "missing"
    elif rest == "missing." and name == "long_description":
        problem = _description_state(wheel)
    elif "syntax errors in markup" in rest:
        problem = "has markup errors and would not render on an index"
    else:
        problem = rest.rstrip(".")
    if details:
        problem += f" ({'; '.join(details)})"
    return MetadataFinding(wheel.name, name, problem, error=level == "ERROR")


def check_metadata(wheels: list[Path], *, strict: bool = False) -> list[MetadataFinding]:
    """`twine check` (with strict, `--strict`) of wheels in one directory: every finding, by
    wheel and field. A failure twine explains with no finding (a wheel it cannot read) raises,
    naming the wheel it was checking."""
    if not wheels:
        return []
    where = wheels[0].parent
    result = _twine(["check", *(["--strict"] if strict else []), *(w.name for w in wheels)], cwd=where)
    # Apart: a "Checking" line twine's crash cut short has no newline before stderr's words.
    output = result.stdout + "\n" + result.stderr
    findings: list[MetadataFinding] = []
    checking: Path | None = None
    status: str | None = None
    message: tuple[str, str, list[str]] | None = None

    def close() -> None:
        if message is not None and checking is not None:
            findings.append(_finding(checking, *message))

    for raw in output.splitlines():
        line = raw.rstrip()
        header = _CHECKING.match(line)
        if header:
            close()
            checking, status, message = where / header["file"], header["status"], None
            continue
        level = _MESSAGE.match(line)
        if level:
            close()
            message = (level["level"], level["text"].strip(), [])
        elif message is not None and line.startswith(" ") and line.strip():
            message[2].append(line.strip())
    close()
    # twine stops at a wheel it cannot read, its "Checking" line left without a verdict.
    stopped_at = checking if checking is not None and status is None else None
    if stopped_at is not None or (result.returncode != 0 and not any(f.error for f in findings) and not (strict and findings)):
        if stopped_at is not None:  # what stopped it is the last thing it said
            which, said = stopped_at.name, ([line.strip() for line in output.splitlines() if line.strip()] or ["no output"])[-1]
        else:
            which, said = ", ".join(w.name for w in wheels), _last_error(output)
        msg = f"twine check failed on {which}: {said}"
        raise PublishError(msg)
    return findings


def by_wheel(findings: list[MetadataFinding]) -> dict[str, str]:
    """Each wheel's findings, as a line names them: `field problem, field problem`."""
    wheels: dict[str, list[str]] = {}
    for finding in sorted(findings, key=lambda f: (f.wheel, f.field)):
        wheels.setdefault(finding.wheel, []).append(str(finding))
    return {wheel: ", ".join(problems) for wheel, problems in wheels.items()}


# What the owner of a wheel with a finding does about it.
DESCRIPTION_HINT = "give the package a readme with text that renders (declared in its pyproject.toml, with its content type)"


def check(wheels: list[Path], url: str, *, strict: bool = False) -> None:
    """`twine check` before anything is uploaded. An error always stops; a warning stops with
    strict, else it is shown and the upload goes on."""
    command = "twine check --strict" if strict else "twine check"
    report.step(f"checking {len(wheels)} first-party wheel(s) with {command}")
    findings = check_metadata(wheels, strict=strict)
    refused = [f for f in findings if f.error or strict]
    if refused:
        if not strict:
            why = "an index would not render it"
        elif is_public_index(url):
            why = f"{url} is a public index, which shows it on the project's page"
        else:
            why = "asked for with --strict"
        named = "; ".join(f"{wheel}: {problems}" for wheel, problems in by_wheel(refused).items())
        msg = f"{command} refused {named} ({why}); {DESCRIPTION_HINT}; nothing was uploaded"
        raise PublishError(msg)
    for wheel, problems in by_wheel(findings).items():
        report.warning(f"{wheel}: {problems} (`invoke publish` to a public index, or with --strict, refuses it)")


def publish(
    house: Wheelhouse, *, repository_url: str | None = None, simple_url: str | None = None,
    skip_existing: bool = False, strict: bool = False,
) -> Published:
    """Check (strictly for a public index, or with strict), then upload each first-party
    wheel; refuse (or skip) a file the index already has; then read every file back from the
    index's Simple API (see the module's docstring)."""
    environ = os.environ
    raw_url = index_url(repository_url, environ)
    url = redact(raw_url, secrets(environ))
    simple = simple_index(raw_url, simple_url, environ)
    wheels = first_party_wheels(house)
    check([house.path / e.file for e in wheels], url, strict=strict or is_public_index(url))
    report.step(f"reading what {simple.root} already holds of {len(wheels)} first-party wheel(s)")
    there = already_there(wheels, simple, url)
    report.step(f"publishing {len(wheels)} first-party wheel(s) to {url}")
    result = Published(url, simple.root)
    upload = ["upload", "--non-interactive", "--disable-progress-bar", "--verbose"]
    for entry in wheels:
        if entry.file in there:
            if skip_existing:
                report.info(f"skipped {entry.file}: {entry.name} {entry.version} is already on {url}, the same bytes (sha256 {entry.sha256})")
                result.skipped.append(entry.file)
                continue
            raise PublishError(_already_there(entry, url))
        answer = _twine([*upload, str(house.path / entry.file)], repository_url)
        if answer.returncode == 0:
            report.info(f"uploaded {entry.file} (sha256 {entry.sha256})")
            result.uploaded.append(entry.file)
            continue
        output = answer.stdout + answer.stderr
        status = _HTTP_ERROR.search(output)
        code = int(status.group(1)) if status else None
        if code == 409 or (code in (400, 403) and _EXISTS.search(output)):
            if skip_existing:
                # Not listed when read before: what the index holds is read back below.
                report.info(f"skipped {entry.file}: {entry.name} {entry.version} is already on {url}")
                result.skipped.append(entry.file)
                continue
            raise PublishError(_already_there(entry, url))
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
    verify_published(wheels, result, simple)
    return result


def _already_there(entry: Entry, url: str) -> str:
    return (
        f"{entry.file}: {entry.name} {entry.version} is already on {url} and a published file is never "
        f"replaced; bump the version in its pyproject.toml, or pass --skip-existing to skip it"
    )


def already_there(wheels: list[Entry], simple: SimpleIndex, url: str) -> set[str]:
    """The wheels the index already holds, byte for byte. One it holds with other bytes stops
    the publish before anything is uploaded: skipping it would leave an index whose file is
    not what the install manifests pin, and uploading cannot replace it."""
    there = set()
    for entry in wheels:
        file = simple.listed(entry, url)
        if file is None:
            continue
        differs = simple.other_bytes(entry, file)
        if differs is not None:
            msg = (
                f"{entry.file}: already on {url}, but {simple.page(entry)} {differs}, not the sha256 {entry.sha256} "
                f"the install manifests pin; a published file is never replaced: bump {entry.name}'s version (nothing was uploaded)"
            )
            raise PublishError(msg)
        there.add(entry.file)
    return there


def verify_published(wheels: list[Entry], result: Published, simple: SimpleIndex) -> None:
    """Every uploaded and skipped file, as the index's Simple API lists and serves it, is the
    wheel the install manifests pin."""
    done = set(result.uploaded) | set(result.skipped)
    checked = [e for e in wheels if e.file in done]
    report.step(f"reading {len(checked)} published wheel(s) back from {simple.root}")
    problems = []
    for entry in checked:
        what = "uploaded" if entry.file in result.uploaded else "skipped as already there"
        file = simple.listed(entry, result.url)
        if file is None:
            problems.append(f"{entry.file}: {what}, but {simple.page(entry)} lists no such file (expected sha256 {entry.sha256}); if the index's Simple API is elsewhere, pass --simple-url")
            continue
        differs = simple.other_bytes(entry, file)
        if differs is not None:
            problems.append(f"{entry.file}: {what}, but {simple.page(entry)} {differs}, not the sha256 {entry.sha256} the install manifests pin; do not install from that index")
            continue
        report.info(f"{entry.file}: listed and served with sha256 {entry.sha256}")
    if problems:
        more = f" (and {len(problems) - 1} more: {', '.join(p.split(':', 1)[0] for p in problems[1:])})" if len(problems) > 1 else ""
        raise PublishError(problems[0] + more)
