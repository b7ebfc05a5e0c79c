"""Helpers for the pipeline's tests: throwaway copies of this monorepo, its invoke tasks run
in them exactly as a user would, offline installs and served services."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


def invoke(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` in cwd with the test interpreter, as a user would from that directory."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k not in CI_TAG_VARIABLES}, **(env or {})},
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"invoke {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result





def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def network_cut_prefix() -> list[str]:
    """`unshare -n` where this user may create a network namespace (root in CI)."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return ["unshare", "-n"] if probe.returncode == 0 else []


def install_offline(repository: Path, service: str, venv: Path) -> subprocess.CompletedProcess[str]:
    """The install command of the wheelhouse, verbatim, into a fresh venv with no network.

    --isolated keeps this machine's pip configuration (local mirrors, find-links) out,
    so the wheelhouse is the only source.
    """
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    command = f"pip install --no-index --find-links wheelhouse --require-hashes --only-binary :all: -r wheelhouse/install/{service}.txt"
    argv = [*network_cut_prefix(), str(venv / "bin" / "python"), "-m", *command.split(), "--isolated"]
    return subprocess.run(argv, cwd=repository, env=clean_env, capture_output=True, text=True, check=False)


class Served:
    """A service's console script serving on a loopback port, stopped on exit."""

    def __init__(self, command: Path, env: dict[str, str], port: int) -> None:
        self.port = port
        self.process = subprocess.Popen([str(command)], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(self, path: str, timeout: float = 20.0):
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
                    output = self.process.stdout.read() if self.process.poll() is not None else ""
                    pytest.fail(f"{path} on port {self.port} never answered: {output}")
                time.sleep(0.2)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()


@contextlib.contextmanager
def serving(argv: list[str], log_path: Path, ready_url: str, name: str, timeout: float = 30.0) -> Iterator[subprocess.Popen]:
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


def retarget(repository: Path, python_version: str, abi: str, platform: str) -> None:
    """Declare another target in a copy's root pyproject.toml."""
    pyproject = repository / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r'python-version = "[^"]+"', f'python-version = "{python_version}"', text)
    text = re.sub(r'abi = "[^"]+"', f'abi = "{abi}"', text)
    text = re.sub(r'platform = "manylinux[^"]+"', f'platform = "{platform}"', text)
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
    from wheelpipe.sdists import SDIST_BUILD_LABEL

    temp = Path(own_temp(repository)["TMPDIR"]).resolve()
    listed = subprocess.run(["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={SDIST_BUILD_LABEL}"], capture_output=True, text=True, check=True)
    if not listed.stdout.split():
        return []
    # A container removed between the two commands is left out of inspect's output (and its exit status is 1).
    mounts = subprocess.run(["docker", "container", "inspect", "--format", "{{.Id}}{{range .Mounts}} {{.Source}}{{end}}", *listed.stdout.split()],
                            capture_output=True, text=True, check=False)
    ours = []
    for line in mounts.stdout.splitlines():
        container, *sources = line.split(" ")
        if any(Path(source).resolve().is_relative_to(temp) for source in sources):
            ours.append(container)
    return ours


def unavailable(reason: str) -> None:
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
        capture_output=True, text=True, check=False,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout
