"""`invoke publish`: the first-party wheels to a real package index (pypiserver on loopback),
and a service installed back from it with every hash required.

The index runs with htpasswd authentication on every action and no fallback to PyPI, from
a process this module starts and stops. Credentials reach `invoke publish` only through
twine's environment variables or ~/.pypirc (HOME is an empty directory per test).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monorepo import ROOT, commit_all, copy_repository, error_lines, fresh_venv, invoke, package_index, write_htpasswd
from packaging.utils import canonicalize_name

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

USER = "publisher"
PASSWORD = "correct-horse-battery-7"
# At least these; the set published is whatever the wheelhouse records as built here.
FIRST_PARTY = {"discount-calculator", "order-manager", "user-manager"}


class Index:
    def __init__(self, port: int, packages: Path) -> None:
        self.port = port
        self.packages = packages
        self.upload_url = f"http://127.0.0.1:{port}/"

    def simple_url(self, auth: bool = True) -> str:
        userinfo = f"{USER}:{PASSWORD}@" if auth else ""
        return f"http://{userinfo}127.0.0.1:{self.port}/simple/"

    def get(self, path: str) -> tuple[int, str]:
        manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        manager.add_password(None, f"http://127.0.0.1:{self.port}/", USER, PASSWORD)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPBasicAuthHandler(manager))
        try:
            with opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """pypiserver on a free loopback port: authentication on upload, download and list; no fallback."""
    with running_index(tmp_path_factory.mktemp("index")) as server:
        yield server


@pytest.fixture
def own_index(tmp_path: Path) -> Iterator[Index]:
    """An index of the test's own, empty when the test starts."""
    with running_index(tmp_path / "index") as server:
        yield server


@contextlib.contextmanager
def running_index(root: Path) -> Iterator[Index]:
    root.mkdir(exist_ok=True)
    packages = root / "packages"
    packages.mkdir()
    write_htpasswd(root / "htpasswd", USER, PASSWORD)
    with package_index(packages, root / "server.log", root / "htpasswd") as port:
        yield Index(port, packages)


def publish(repository: Path, home: Path, *args: str, **twine_env: str) -> subprocess.CompletedProcess[str]:
    """`invoke publish ARGS` with only the TWINE_* variables given, and HOME (for ~/.pypirc) at `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINE_", "PIP_"))}
    env.update({"HOME": str(home), **twine_env})
    return subprocess.run([sys.executable, "-m", "invoke", "publish", *args], cwd=repository, env=env, capture_output=True, text=True, check=False)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def manifest(repository: Path) -> dict[str, dict[str, Any]]:
    return {w["file"]: w for w in json.loads((repository / "wheelhouse" / "manifest.json").read_text())["wheels"]}


def test_publish_uploads_the_first_party_wheels_and_a_service_installs_from_the_index_with_hashes(built_repo: Path, index: Index, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    wheels = manifest(built_repo)
    first_party = {f: w for f, w in wheels.items() if w["origin"]["kind"] == "built"}
    assert {w["name"] for w in first_party.values()} >= FIRST_PARTY

    result = publish(built_repo, home, TWINE_REPOSITORY_URL=index.upload_url, TWINE_USERNAME=USER, TWINE_PASSWORD=PASSWORD)
    assert result.returncode == 0, output(result)
    # Our own index, with no --strict: twine check, which finds nothing in these wheels.
    assert f"checking {len(first_party)} first-party wheel(s) with twine check\n" in result.stderr
    assert "warning:" not in output(result)
    assert f"published {len(first_party)} wheel(s) to {index.upload_url}" in result.stdout
    assert PASSWORD not in output(result)
    # Exactly the first-party wheels, byte for byte.
    assert sorted(p.name for p in index.packages.iterdir()) == sorted(first_party)
    status, page = index.get("/simple/order-manager/")
    order = next(w for w in first_party.values() if w["name"] == "order-manager")
    assert status == 200
    assert f"{order['file']}#sha256={order['sha256']}" in page
    assert index.get("/simple/flask/")[0] == 404

    # Install the order service: third-party wheels from a directory holding only those, the
    # first-party ones only from the index, every hash from the install manifest required.
    third_party = tmp_path / "third-party"
    third_party.mkdir()
    for name, wheel in wheels.items():
        if wheel["origin"]["kind"] != "built":
            shutil.copy2(built_repo / "wheelhouse" / name, third_party / name)
    pip = fresh_venv(tmp_path / "venv")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
    install = subprocess.run(
        [*pip, "install", "--isolated", "--disable-pip-version-check",
         "--index-url", index.simple_url(), "--find-links", str(third_party),
         "--require-hashes", "--only-binary", ":all:", "--report", str(report),
         "-r", str(built_repo / "wheelhouse" / "install" / "order.txt")],
        env=env, capture_output=True, text=True, check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    sources = {canonicalize_name(item["metadata"]["name"]): item["download_info"]["url"] for item in json.loads(report.read_text())["install"]}
    first_party_names = {w["name"] for w in first_party.values()}
    assert {"order-manager", "discount-calculator"} <= set(sources)
    for name, url in sources.items():
        expected = f"http://127.0.0.1:{index.port}/packages/" if name in first_party_names else third_party.as_uri()
        assert url.startswith(expected), sources
    assert "user-manager" not in sources  # only what the install manifest pins
    served = subprocess.run(
        [tmp_path / "venv" / "bin" / "python", "-c", "import order_manager.server, importlib.metadata as m; print(m.version('order-manager'))"],
        capture_output=True, text=True, check=True,
    )
    assert served.stdout.strip() == "0.1.0"

    # Publishing the same versions again is refused, naming the file already there; the
    # --repository-url option overrides TWINE_REPOSITORY_URL.
    again = publish(
        built_repo, home, "--repository-url", index.upload_url,
        TWINE_REPOSITORY_URL="http://127.0.0.1:9/nowhere/", TWINE_USERNAME=USER, TWINE_PASSWORD=PASSWORD,
    )
    assert again.returncode != 0
    (line,) = error_lines(again)
    assert min(first_party) in line and "already on" in line and index.upload_url in line  # the first one tried
    assert "--skip-existing" in line
    assert PASSWORD not in output(again)

    # --skip-existing, configured through ~/.pypirc and TWINE_REPOSITORY this time: each file
    # is reported as skipped, and nothing fails.
    (home / ".pypirc").write_text(
        f"[distutils]\nindex-servers = internal\n\n[internal]\nrepository = {index.upload_url}\nusername = {USER}\npassword = {PASSWORD}\n"
    )
    skipped = publish(built_repo, home, "--skip-existing", TWINE_REPOSITORY="internal")
    assert skipped.returncode == 0, output(skipped)
    for name in first_party:
        assert f"skipped {name}" in output(skipped)
    assert "published 0 wheel(s)" in skipped.stdout and f"skipped {len(first_party)} already there" in skipped.stdout
    assert PASSWORD not in output(skipped)
    assert sorted(p.name for p in index.packages.iterdir()) == sorted(first_party)


def test_wrong_credentials_are_one_line_naming_the_index_and_never_show_the_password(built_repo: Path, index: Index, tmp_path: Path) -> None:
    wrong = "not-the-password-31337"
    result = publish(built_repo, tmp_path, TWINE_REPOSITORY_URL=index.upload_url, TWINE_USERNAME=USER, TWINE_PASSWORD=wrong)
    assert result.returncode != 0
    (line,) = error_lines(result)
    assert f"the index refused the credentials for {index.upload_url}" in line
    assert wrong not in output(result) and PASSWORD not in output(result)
    verbose = publish(built_repo, tmp_path, "--verbose", TWINE_REPOSITORY_URL=index.upload_url, TWINE_USERNAME=USER, TWINE_PASSWORD=wrong)
    assert verbose.returncode != 0 and "twine" in verbose.stderr
    assert wrong not in output(verbose)


def test_credentials_in_the_url_never_show_either(built_repo: Path, index: Index, tmp_path: Path) -> None:
    wrong = "in-url-secret-4242"
    url = f"http://{USER}:{wrong}@127.0.0.1:{index.port}/"
    result = publish(built_repo, tmp_path, "--verbose", "--repository-url", url)
    assert result.returncode != 0
    (line,) = error_lines(result)
    assert "the index refused the credentials for http://***@127.0.0.1" in line
    assert wrong not in output(result)


def test_no_index_configured_says_how_to_configure_one_before_uploading_anything(built_repo: Path, index: Index, tmp_path: Path) -> None:
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    result = publish(built_repo, empty_home, TWINE_USERNAME=USER, TWINE_PASSWORD=PASSWORD)
    assert result.returncode != 0
    (line,) = error_lines(result)
    assert "no package index configured" in line
    assert "TWINE_REPOSITORY_URL" in line and "--repository-url" in line and "~/.pypirc" in line
    assert "twine check" not in output(result)  # stopped before doing anything
    unknown = publish(built_repo, empty_home, TWINE_REPOSITORY="internal")
    assert unknown.returncode != 0
    (line,) = error_lines(unknown)
    assert "TWINE_REPOSITORY=internal" in line and ".pypirc" in line


def test_missing_wheelhouse_is_named(repo_copy: Path, tmp_path: Path) -> None:
    result = publish(repo_copy, tmp_path, TWINE_REPOSITORY_URL="http://127.0.0.1:9/")
    assert result.returncode != 0
    (line,) = error_lines(result)
    assert "wheelhouse/" in line and "invoke build-wheels" in line


# Another team's monorepo as most arrive (tests/packages/foreign_monorepo, not ours): apps/api
# declares no readme (hatchling), and libs/util, built here by setuptools, an empty one.
FOREIGN_MONOREPO = ROOT / "tests" / "packages" / "foreign_monorepo"
UTIL_WITH_AN_EMPTY_README = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "foreign-util"
version = "0.3.0"
requires-python = ">=3.11"
readme = "README.md"
dependencies = ["six>=1.16"]

[tool.setuptools.packages.find]
where = ["src"]
"""
API_WHEEL = "foreign_api-0.2.0-py3-none-any.whl"
UTIL_WHEEL = "foreign_util-0.3.0-py3-none-any.whl"
# What twine check warns about in each, as wheelpipe names it.
API_FINDINGS = f"{API_WHEEL}: long_description missing, long_description_content_type missing"
UTIL_FINDINGS = f"{UTIL_WHEEL}: long_description empty"


@pytest.fixture(scope="module")
def readmeless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The foreign monorepo with those readmes, locked, committed and built."""
    repository = copy_repository(tmp_path_factory.mktemp("readmeless") / "foreign", FOREIGN_MONOREPO)
    util = repository / "libs" / "util"
    util.joinpath("pyproject.toml").write_text(UTIL_WITH_AN_EMPTY_README)
    util.joinpath("README.md").write_text("")
    invoke(repository, "lock")
    commit_all(repository, "locked; libs/util built by setuptools, with an empty readme")
    invoke(repository, "build-wheels")
    assert sorted(p.name for p in (repository / "wheelhouse").glob("foreign_*.whl")) == [API_WHEEL, UTIL_WHEEL]
    return repository


def warning_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in output(result).splitlines() if line.startswith("warning:")]


def test_a_release_of_wheels_without_a_description_warns_naming_each_wheel_and_field_and_goes_on(readmeless: Path) -> None:
    result = invoke(readmeless, "release", "--skip-gates")
    assert "twine check on 2 first-party wheels" in result.stderr
    assert warning_lines(result) == [
        f"warning: {API_FINDINGS} (fine for this wheelhouse; `invoke publish` to a public index, or with --strict, refuses it)",
        f"warning: {UTIL_FINDINGS} (fine for this wheelhouse; `invoke publish` to a public index, or with --strict, refuses it)",
    ], result.stderr
    assert (readmeless / "dist" / "wheelhouse-1.0.0.tar.gz").is_file()


def test_a_description_that_would_not_render_stops_the_release_naming_the_wheel_and_field(readmeless: Path, tmp_path: Path) -> None:
    # An error, not a warning: reStructuredText that no index can render.
    repository = Path(shutil.copytree(readmeless, tmp_path / "foreign", symlinks=True))
    shutil.rmtree(repository / "dist", ignore_errors=True)
    api = repository / "apps" / "api"
    api.joinpath("README.rst").write_text("Foreign API\n===\n\nSee `the docs\n")
    pyproject = api / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('requires-python = ">=3.11"\n', 'requires-python = ">=3.11"\nreadme = "README.rst"\n'))
    commit_all(repository, "a readme with broken markup")
    result = invoke(repository, "release", "--skip-gates", check=False)
    assert result.returncode == 1 and "Traceback" not in output(result), output(result)
    (line,) = error_lines(result)
    assert line.startswith(f"error: twine check refused {API_WHEEL}: long_description has markup errors and would not render on an index (line 4: "), line
    assert UTIL_WHEEL not in line  # its warning is not an error
    assert not (repository / "dist").exists()


@pytest.mark.parametrize(
    ("args", "env", "url"),
    [
        (["--repository-url", "https://upload.pypi.org/legacy/"], {}, "https://upload.pypi.org/legacy/"),
        ([], {"TWINE_REPOSITORY_URL": "https://test.pypi.org/legacy/"}, "https://test.pypi.org/legacy/"),
        ([], {"TWINE_REPOSITORY": "pypi"}, "https://upload.pypi.org/legacy/"),
    ],
    ids=["pypi-url", "testpypi-env", "pypi-repository"],
)
def test_publishing_to_a_public_index_is_strict_one_line_naming_wheels_and_fields_and_uploads_nothing(readmeless: Path, tmp_path: Path, args: list[str], env: dict[str, str], url: str) -> None:
    # No credentials: were the check to let a wheel through, twine would stop before uploading.
    result = publish(readmeless, tmp_path, *args, **env)
    assert result.returncode == 1 and "Traceback" not in output(result), output(result)
    assert error_lines(result) == [
        f"error: twine check --strict refused {API_FINDINGS}; {UTIL_FINDINGS} ({url} is a public index, which shows it on the project's page); "
        "give the package a readme with text that renders (declared in its pyproject.toml, with its content type); nothing was uploaded"
    ]
    assert "publishing" not in output(result)


def test_strict_refuses_on_our_own_index_too_and_without_it_the_wheels_go_up_with_a_warning_each(readmeless: Path, own_index: Index, tmp_path: Path) -> None:
    credentials = {"TWINE_REPOSITORY_URL": own_index.upload_url, "TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD}
    strict = publish(readmeless, tmp_path, "--strict", **credentials)
    assert strict.returncode == 1, output(strict)
    assert error_lines(strict) == [
        f"error: twine check --strict refused {API_FINDINGS}; {UTIL_FINDINGS} (asked for with --strict); "
        "give the package a readme with text that renders (declared in its pyproject.toml, with its content type); nothing was uploaded"
    ]
    assert list(own_index.packages.iterdir()) == []

    lenient = publish(readmeless, tmp_path, **credentials)
    assert lenient.returncode == 0, output(lenient)
    assert warning_lines(lenient) == [
        f"warning: {API_FINDINGS} (`invoke publish` to a public index, or with --strict, refuses it)",
        f"warning: {UTIL_FINDINGS} (`invoke publish` to a public index, or with --strict, refuses it)",
    ]
    assert sorted(p.name for p in own_index.packages.iterdir()) == [API_WHEEL, UTIL_WHEEL]


# Publish believes the index no more than it has to: what was uploaded (or skipped) is read
# back from the index's Simple API, listed sha256 and served bytes.


class LyingIndex:
    """A real HTTP index on loopback that accepts every upload and then gives out something
    else: the threat of an index, or a proxy in front of one, that serves other bytes.

    lie = "another-sha256": lists each uploaded file with another sha256 (serves the bytes);
    "other-bytes": lists the uploaded sha256 but serves other bytes; "nothing": lists no file.
    """

    def __init__(self, lie: str) -> None:
        import hashlib
        import threading
        from email.parser import BytesParser
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from packaging.utils import parse_wheel_filename

        self.uploads: dict[str, bytes] = {}
        stored = self.uploads

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet: the test reads what twine says
                pass

            def _answer(self, status: int, body: bytes, kind: str = "text/html") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                form = BytesParser().parsebytes(f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
                for part in form.walk():
                    if filename := part.get_filename():
                        payload = part.get_payload(decode=True)
                        assert isinstance(payload, bytes)  # a part with a file name is a leaf: its decoded bytes
                        stored[filename] = payload
                self._answer(200, b"OK")

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/health":
                    return self._answer(200, b"OK")
                if self.path.startswith("/packages/") and self.path.removeprefix("/packages/") in stored:
                    data = stored[self.path.removeprefix("/packages/")]
                    return self._answer(200, data + b"\0" if lie == "other-bytes" else data, "application/octet-stream")
                project = self.path.removeprefix("/simple/").strip("/")
                links = []
                for name, data in sorted(stored.items()):
                    if lie != "nothing" and canonicalize_name(parse_wheel_filename(name)[0]) == project:
                        digest = hashlib.sha256(data + b"\0" if lie == "another-sha256" else data).hexdigest()
                        links.append(f'<a href="../../packages/{name}#sha256={digest}">{name}</a>')
                if not links and lie != "nothing":
                    return self._answer(404, b"no such project")
                self._answer(200, f"<!DOCTYPE html><html><body>{''.join(links)}</body></html>".encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.upload_url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LyingIndex:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def publishes_to(index: LyingIndex) -> dict[str, str]:
    return {"TWINE_REPOSITORY_URL": index.upload_url, "TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD}


@pytest.mark.parametrize(
    ("lie", "found"),
    [("another-sha256", "lists it with sha256 {other}"), ("other-bytes", "lists it with sha256 {sha256}, but serves bytes with sha256 {other}")],
)
def test_an_index_that_accepts_the_upload_and_gives_out_other_bytes_is_one_line_naming_file_expected_and_found(built_repo: Path, tmp_path: Path, lie: str, found: str) -> None:
    import hashlib

    wheels = manifest(built_repo)
    first = min(f for f, w in wheels.items() if w["origin"]["kind"] == "built")
    with LyingIndex(lie) as index:
        result = publish(built_repo, tmp_path, **publishes_to(index))
        other = hashlib.sha256(index.uploads[first] + b"\0").hexdigest()
        page = f"{index.upload_url}simple/{canonicalize_name(wheels[first]['name'])}/"
    assert result.returncode == 1 and "Traceback" not in output(result), output(result)
    assert hashlib.sha256(index.uploads[first]).hexdigest() == wheels[first]["sha256"]  # it was sent the right bytes
    (line,) = error_lines(result)
    expected = found.format(other=other, sha256=wheels[first]["sha256"])
    assert line.startswith(f"error: {first}: uploaded, but {page} {expected}, not the sha256 {wheels[first]['sha256']} the install manifests pin; do not install from that index"), line
    assert " more: " in line  # every first-party wheel it lied about is named, in the same line
    assert "published" not in result.stdout


def test_an_index_that_lists_no_uploaded_file_is_one_line_saying_where_it_looked(readmeless: Path, tmp_path: Path) -> None:
    """Another team's monorepo, and an index that takes the files and lists none (or a
    Simple API that is not where it was looked for)."""
    with LyingIndex("nothing") as index:
        result = publish(readmeless, tmp_path, **publishes_to(index))
    assert result.returncode == 1, output(result)
    (line,) = error_lines(result)
    sha256 = manifest(readmeless)[API_WHEEL]["sha256"]
    assert line == (
        f"error: {API_WHEEL}: uploaded, but {index.upload_url}simple/foreign-api/ lists no such file (expected sha256 {sha256}); "
        f"if the index's Simple API is elsewhere, pass --simple-url (and 1 more: {UTIL_WHEEL})"
    )
    assert "published" not in result.stdout


def test_a_simple_url_that_is_not_a_url_is_one_line_before_anything_is_uploaded(built_repo: Path, tmp_path: Path) -> None:
    with LyingIndex("another-sha256") as index:
        result = publish(built_repo, tmp_path, "--simple-url", "index.internal/simple", **publishes_to(index))
    assert result.returncode == 1
    assert error_lines(result) == ["error: --simple-url 'index.internal/simple': expected the http(s) URL of the index's Simple API (e.g. https://index.example/simple/)"]
    assert index.uploads == {}


@pytest.mark.parametrize("skip", [True, False], ids=["skip-existing", "plain"])
def test_a_file_already_on_the_index_with_other_bytes_stops_the_publish_before_anything_is_uploaded(built_repo: Path, own_index: Index, tmp_path: Path, skip: bool) -> None:
    """pypiserver holds order-manager's wheel file name with other bytes (someone published
    another build of that version): skipping it would leave the install manifests pinning a
    file the index does not have."""
    import hashlib

    wheels = manifest(built_repo)
    order = next(w for w in wheels.values() if w["name"] == "order-manager")
    planted = (built_repo / "wheelhouse" / order["file"]).read_bytes() + b"another build"
    (own_index.packages / order["file"]).write_bytes(planted)
    result = publish(built_repo, tmp_path, *(["--skip-existing"] if skip else []), TWINE_REPOSITORY_URL=own_index.upload_url, TWINE_USERNAME=USER, TWINE_PASSWORD=PASSWORD)
    assert result.returncode == 1 and "Traceback" not in output(result), output(result)
    (line,) = error_lines(result)
    assert line == (
        f"error: {order['file']}: already on {own_index.upload_url}, but {own_index.simple_url(auth=False)}order-manager/ lists it with sha256 "
        f"{hashlib.sha256(planted).hexdigest()}, not the sha256 {order['sha256']} the install manifests pin; "
        "a published file is never replaced: bump order-manager's version (nothing was uploaded)"
    )
    assert [p.name for p in own_index.packages.iterdir()] == [order["file"]]
    assert "skipped" not in output(result) and "published" not in result.stdout
