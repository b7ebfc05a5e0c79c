"""Helpers for the pipeline's tests: throwaway copies of this monorepo, its invoke tasks run
in them exactly as a user would, offline installs and served services."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The monorepo the tests copy, build and break: a fixture, not this repository's demo, so
# replacing the demo's services breaks no test of the pipeline.
FIXTURE = ROOT / "tests" / "packages" / "monorepo"
# A fixed commit time makes wheels built from different copies comparable.
COMMIT_ENV = {
    "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z",
    "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
    "GIT_AUTHOR_NAME": "tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
}


# A root pyproject.toml's wheelpipe tables, for the small monorepos tests write from scratch.
TARGET_TABLE = """\
[tool.wheelpipe.release]
version = "1.0.0"

[tool.wheelpipe.target]
python-version = "3.11"
implementation = "cp"
abi = "cp311"
platform = "manylinux_2_36_x86_64"
"""


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **COMMIT_ENV}, capture_output=True, text=True, check=True)
    return result.stdout


def project_files(root: Path) -> list[str]:
    """What a clone would hold, plus work not committed yet: tracked and unignored files."""
    listed = git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    return sorted({name for name in listed.split("\0") if name and (root / name).is_file()})


def copy_repository(destination: Path, source: Path = FIXTURE) -> Path:
    """A committed copy of the fixture monorepo (or of `source`) at `destination`, its own
    git repository."""
    for name in project_files(source):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target)
    git(destination, "init", "-q", "-b", "main")
    commit_all(destination, "copy of the monorepo")
    return destination


def commit_all(repository: Path, message: str) -> None:
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "--allow-empty", "-m", message)


# The tag a CI run was started for (release.ci_tags): when this suite runs for a tag of
# wheelpipe, that tag is not one of the copies the tests release.
CI_TAG_VARIABLES = ("GITHUB_REF", "GITHUB_REF_NAME", "GITHUB_REF_TYPE")


def invoke(cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None, process: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` in cwd with the test interpreter, as a user would from that directory.

    In this process (invoke's own Program, as `python -m invoke` runs it), which spares each
    call an interpreter's start and the pipeline's imports; `process=True`, or an environment
    that changes how an interpreter starts, runs it in a fresh one instead. Either way the
    result is what the command's process gave: its exit status, stdout and stderr.
    """
    if process or any(name.startswith(FRESH_INTERPRETER) for name in env or {}):
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env={**{k: v for k, v in os.environ.items() if k not in CI_TAG_VARIABLES}, **(env or {})},
            check=False,
        )
    else:
        result = invoke_in_process(cwd, list(args), env or {})
    if check and result.returncode != 0:
        pytest.fail(f"invoke {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def error_lines(result: subprocess.CompletedProcess[str] | str) -> list[str]:
    """The `error:` lines of a command's stderr (or of a text), in order; a traceback there is
    a failure of its own (bad input gets a line, never a traceback)."""
    text = result if isinstance(result, str) else result.stderr
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("error:")]


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """What every refusal must look like: exit 1, no traceback, exactly one `error:` line; that line."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    errors = error_lines(result)
    assert len(errors) == 1, output
    return errors[0]


def failure(repository: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`invoke ARGS` in `repository`, which must refuse as `one_error` says: its one line."""
    return one_error(invoke(repository, *args, check=False, env=env))


def wheelhouse_state(repository: Path) -> tuple[str, list[str], dict[str, str]]:
    """Where `wheelhouse` points, the generations under .wheelhouse/ and every file of the
    current one by sha256: equal before and after means nothing was written or lost."""
    current = (repository / "wheelhouse").resolve()
    files = {p.relative_to(current).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in current.rglob("*") if p.is_file()}
    return os.readlink(repository / "wheelhouse"), sorted(os.listdir(repository / ".wheelhouse")), files


# Variables an interpreter reads as it starts (its path, encoding, warnings, hash seed): a
# call that sets one needs an interpreter of its own.
FRESH_INTERPRETER = ("PYTHON", "LANG", "LC_")


@dataclass(frozen=True)
class _Fresh:
    """What a fresh `python -m invoke` starts with: how it writes its stdout and stderr to a
    pipe, and its warning filters (action, message, category, module, line), pytest's
    filterwarnings = error not among them."""

    encoding: str
    stdout_errors: str
    stderr_errors: str
    warnings: tuple[tuple[str, str, str, str, int], ...]


@functools.cache
def _fresh() -> _Fresh:
    probe = (
        "import json, sys, warnings; print(json.dumps([sys.stdout.encoding, sys.stdout.errors, sys.stderr.errors, "
        "[(a, getattr(m, 'pattern', m) or '', c.__name__, getattr(o, 'pattern', o) or '', n) for a, m, c, o, n in warnings.filters]]))"
    )
    said = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    encoding, stdout_errors, stderr_errors, filters = json.loads(said)
    return _Fresh(encoding, stdout_errors, stderr_errors, tuple(tuple(f) for f in filters))


def invoke_in_process(cwd: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m invoke ARGS` in cwd, run by this interpreter: a fresh invoke Program (the
    tasks load the repository model anew on every call), with cwd, the environment, the
    temporary directory, stdin, the warning filters and both output streams (file
    descriptors 1 and 2 too, where the tools it starts would write) as that process would
    have them, and all of them put back afterwards, with sys.path and the modules invoke's
    loader added (the copy's tasks.py)."""
    import builtins
    import gc
    import io
    import locale
    import tempfile
    import traceback
    import warnings

    from invoke import __version__
    from invoke.program import Program

    fresh = _fresh()
    # What the test itself left unclosed is collected, and warned about, under the test's own
    # filters; below, what the call left is collected under the fresh process's.
    gc.collect()
    saved_environ, saved_cwd, saved_path, saved_modules = dict(os.environ), os.getcwd(), list(sys.path), set(sys.modules)
    saved_streams, saved_tempdir = (sys.stdin, sys.stdout, sys.stderr), tempfile.tempdir
    saved_fds = [os.dup(1), os.dup(2)]
    program: Program | None = None
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        open(os.devnull) as nothing,
        # Descriptors 1 and 2 by number: whatever they point to when written, which is `out` and `err` below.
        open(1, "wb", closefd=False) as stdout_fd,
        open(2, "wb", closefd=False) as stderr_fd,
        warnings.catch_warnings(),
    ):
        code = 0
        try:
            for name in CI_TAG_VARIABLES:
                os.environ.pop(name, None)
            os.environ.update(env)
            os.chdir(cwd)
            tempfile.tempdir = None  # read TMPDIR anew, as a fresh process would
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdin = nothing
            sys.stdout = io.TextIOWrapper(stdout_fd, encoding=fresh.encoding, errors=fresh.stdout_errors, write_through=True)
            sys.stderr = io.TextIOWrapper(stderr_fd, encoding=fresh.encoding, errors=fresh.stderr_errors, write_through=True)
            warnings.resetwarnings()
            for action, message, category, module, line in reversed(fresh.warnings):
                # The action is a str read back from the fresh interpreter; typeshed wants its Literal.
                warnings.filterwarnings(action, message, getattr(builtins, category), module, line)  # type: ignore[arg-type]
            # Shown on stderr, as a process shows them; not kept in pytest's record.
            # A private name of the warnings module (the showwarning it started with): not in typeshed.
            warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]
            program = Program(name="Invoke", binary="inv[oke]", binary_names=["invoke", "inv"], version=__version__)
            program.run(["invoke", *args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if stop.code is not None and not isinstance(stop.code, int):
                print(stop.code, file=sys.stderr)
        except Exception:
            # What the interpreter does with an exception nobody caught.
            traceback.print_exc()
            code = 1
        finally:
            # A process's end reclaims what the call left open (the pipes of invoke's runner,
            # held in reference cycles) and says nothing: its filters ignore ResourceWarning.
            program = None
            gc.collect()
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            tempfile.tempdir = saved_tempdir
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_environ)
            sys.path[:] = saved_path
            for name in set(sys.modules) - saved_modules:
                origin = getattr(sys.modules[name], "__file__", None) or ""
                if name == "tasks" or origin.startswith(str(cwd)):
                    del sys.modules[name]

        def text(file: BinaryIO) -> str:
            # As subprocess.run(text=True) reads a pipe: the locale's encoding, universal newlines.
            file.seek(0)
            return io.TextIOWrapper(io.BytesIO(file.read()), encoding=locale.getpreferredencoding(False)).read()

        return subprocess.CompletedProcess([sys.executable, "-m", "invoke", *args], code, text(out), text(err))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def network_cut_prefix() -> list[str]:
    """`unshare -n` where this user may create a network namespace (root in CI)."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return ["unshare", "-n"] if probe.returncode == 0 else []


def fresh_venv(venv: Path) -> list[str]:
    """A fresh venv, and the pip command that installs into it: the tooling's own pip (pinned
    in requirements/dev.txt) run for the venv's interpreter (`pip --python`). The venv gets no
    pip of its own: ensurepip costs some 4 s of CPU per venv, a minute over the suite."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    return pip_in(venv)


def pip_in(venv: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]


def install_offline(repository: Path, service: str, venv: Path) -> subprocess.CompletedProcess[str]:
    """The install command of the wheelhouse, verbatim, into a fresh venv with no network.

    --isolated keeps this machine's pip configuration (local mirrors, find-links) out,
    so the wheelhouse is the only source.
    """
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    command = f"pip install --no-index --find-links wheelhouse --require-hashes --only-binary :all: -r wheelhouse/install/{service}.txt"
    argv = [*network_cut_prefix(), *fresh_venv(venv), *command.split()[1:], "--isolated"]
    return subprocess.run(argv, cwd=repository, env=clean_env, capture_output=True, text=True, check=False)


class Served:
    """A service's console script serving on a loopback port, stopped on exit."""

    def __init__(self, command: Path, env: dict[str, str], port: int) -> None:
        self.port = port
        self.process = subprocess.Popen([str(command)], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None  # stdout=PIPE: always there
        self.output: IO[str] = self.process.stdout

    def get(self, path: str, timeout: float = 20.0) -> tuple[int, Any]:
        """The status and the JSON body (whatever JSON it holds) of the first answer to GET path."""
        import json
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            try:
                with opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                    return response.status, json.loads(response.read())
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = self.output.read() if self.process.poll() is not None else ""
                    pytest.fail(f"{path} on port {self.port} never answered: {output}")
                time.sleep(0.2)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.output.close()


@contextlib.contextmanager
def serving(argv: list[str], log_path: Path, ready_url: str, name: str, timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    """A server process of the tests' own on loopback: started, awaited until `ready_url`
    answers 200, and stopped (by its handle) however the test ends."""
    import time
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with log_path.open("w") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with opener.open(ready_url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"{name} did not start at {ready_url}: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield server
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextlib.contextmanager
def container_registry(root: Path) -> Iterator[int]:
    """docker-registry (Debian's CNCF distribution registry; `.ci/registry` installs it) serving
    on a free loopback port, its storage and config under `root`; its port."""
    binary = shutil.which("docker-registry")
    if not binary:
        unavailable("no docker-registry binary: run .ci/registry (Debian: apt-get install docker-registry)")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with serving([binary, "serve", str(config)], root / "registry.log", f"http://127.0.0.1:{port}/v2/", "docker-registry"):
        yield port


def add_dependency(repository: Path, service: str, requirement: str) -> None:
    """Add `requirement` to a service's [project] dependencies in a copy."""
    pyproject = repository / "services" / service / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count("dependencies = [\n") == 1, f"unexpected layout of {pyproject}"
    pyproject.write_text(text.replace("dependencies = [\n", f"dependencies = [\n    {json.dumps(requirement)},\n", 1))


def write_htpasswd(path: Path, user: str, password: str) -> None:
    """An htpasswd file for one user, bcrypt: the one scheme docker-registry takes, and one
    pypiserver (through passlib) takes too."""
    with warnings.catch_warnings():
        # passlib imports the stdlib's crypt module, deprecated since Python 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.apache import HtpasswdFile

        htpasswd = HtpasswdFile(str(path), new=True, default_scheme="bcrypt")
        htpasswd.set_password(user, password)
        htpasswd.save()


@contextlib.contextmanager
def package_index(packages: Path, log: Path, htpasswd: Path | None = None) -> Iterator[int]:
    """A real package index of the tests' own: pypiserver on a free loopback port serving
    `packages`, never falling back to PyPI; open to all, or with `htpasswd` asked for
    credentials on every action. Its port; stopped however the test ends."""
    port = free_port()
    access = ["-P", str(htpasswd), "-a", "update,download,list"] if htpasswd else ["-a", ".", "-P", "."]
    argv = [sys.executable, "-m", "pypiserver", "run", "-p", str(port), "-i", "127.0.0.1", *access, "--disable-fallback", str(packages)]
    with serving(argv, log, f"http://127.0.0.1:{port}/health", "pypiserver"):
        yield port


def retarget(repository: Path, python_version: str, abi: str, platform: str) -> None:
    """Declare another target in a copy's root pyproject.toml."""
    pyproject = repository / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r'python-version = "[^"]+"', f'python-version = "{python_version}"', text)
    text = re.sub(r'abi = "[^"]+"', f'abi = "{abi}"', text)
    text = re.sub(r'platform = "manylinux[^"]+"', f'platform = "{platform}"', text)
    pyproject.write_text(text)


def two_platforms(repository: Path, *platforms: str) -> None:
    """Declare `platforms` (same interpreter) in a copy's root pyproject.toml."""
    pyproject = repository / "pyproject.toml"
    text, count = re.subn(r'^platform = "[^"]+"$', f"platforms = {json.dumps(list(platforms))}", pyproject.read_text(), flags=re.MULTILINE)
    assert count == 1, f"unexpected layout of {pyproject}"
    pyproject.write_text(text)


def own_temp(repository: Path) -> dict[str, str]:
    """TMPDIR for a command on `repository`: a directory beside it. The work directories of
    its builds, which their containers mount, then lie there (see build_step_containers)."""
    temp = repository.parent / "tmp"
    temp.mkdir(exist_ok=True)
    return {"TMPDIR": str(temp)}


def build_step_containers(repository: Path) -> list[str]:
    """Containers of build steps (labelled as such) still there that mount a work directory
    of a command run on `repository` with own_temp(repository). Under invoke test's workers
    another file's builds may be running meanwhile: their containers mount other directories."""
    from wheelpipe.build.runner import SDIST_BUILD_LABEL

    temp = Path(own_temp(repository)["TMPDIR"]).resolve()
    listed = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={SDIST_BUILD_LABEL}"], capture_output=True, text=True, check=True
    )
    if not listed.stdout.split():
        return []
    # A container removed between the two commands is left out of inspect's output (and its exit status is 1).
    mounts = subprocess.run(
        ["docker", "container", "inspect", "--format", "{{.Id}}{{range .Mounts}} {{.Source}}{{end}}", *listed.stdout.split()],
        capture_output=True,
        text=True,
        check=False,
    )
    ours = []
    for line in mounts.stdout.splitlines():
        container, *sources = line.split(" ")
        if any(Path(source).resolve().is_relative_to(temp) for source in sources):
            ours.append(container)
    return ours


def member_bytes(archive: tarfile.TarFile, member: str | tarfile.TarInfo) -> bytes:
    """The bytes of a regular file in the archive (extractfile gives None for any other member)."""
    file = archive.extractfile(member)
    assert file is not None, f"{member!r} is not a regular file of the archive"
    return file.read()


def unavailable(reason: str) -> NoReturn:
    """A test's prerequisite (an engine, an image, a binary) is missing: under CI=true, where
    every test must run, that fails; elsewhere the test skips, saying what to do."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def run_from_wheel(repository: Path, wheel: str, image: str, code: str) -> str:
    """What `code` prints, run by the python3 of `image` with no network, importing from the
    wheel of the repository's wheelhouse unpacked (not installed: nothing else on the path)."""
    script = f"python3 -m zipfile -e /wheelhouse/{wheel} /tmp/unpacked && cd / && PYTHONPATH=/tmp/unpacked python3 -c {shlex.quote(code)}"
    ran = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--volume", f"{repository / 'wheelhouse'}:/wheelhouse:ro", image, "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout
