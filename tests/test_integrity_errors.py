"""Bad input and a hostile machine get one line naming the file and the true cause, never a
traceback, and leave the repository and the wheelhouse exactly as they were.

Every case runs the real `invoke` in a copy of a monorepo whose wheelhouse is built once for
this module.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from monorepo import invoke

from wheelpipe import load_repository
from wheelpipe.errors import describe_os_error

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

ORDER = "services/order/pyproject.toml"
SOURCE_EDIT = "shared/service_runtime/src/service_runtime/__init__.py"


@pytest.fixture
def repo(built_copy: Path) -> Path:
    return built_copy


# --- what "nothing written or lost" means -----------------------------------------------


@dataclass(frozen=True)
class State:
    files: dict[str, str]  # every tracked or unignored file -> sha256 of its bytes
    wheelhouse: str | None  # where the wheelhouse symlink points

    @classmethod
    def of(cls, repository: Path) -> State:
        # Bytes, not text: some cases name files in no encoding at all.
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=repository, capture_output=True, check=True).stdout
        names = [os.fsdecode(name) for name in listed.split(b"\0") if name]
        files = {name: hashlib.sha256((repository / name).read_bytes()).hexdigest() for name in names if (repository / name).is_file()}
        link = repository / "wheelhouse"
        return cls(files, os.readlink(link) if link.is_symlink() else None)


def assert_untouched(repository: Path, before: State) -> None:
    assert State.of(repository) == before
    if before.wheelhouse:
        checked = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=repository / "wheelhouse", capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def one_line(result: subprocess.CompletedProcess[str], prefix: str = "error: ", code: int = 1) -> str:
    """The one `error:` line of a failed run; everything else on stderr is progress."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    lines = result.stderr.splitlines()
    reported = [line for line in lines if line.startswith(prefix)]
    assert len(reported) == 1, result.stderr
    assert all(line.startswith(("==> ", "    ")) for line in lines if line not in reported), result.stderr
    return reported[0]


def edit(repository: Path, name: str, old: str, new: str) -> None:
    path = repository / name
    text = path.read_text()
    assert old in text, f"{name} no longer holds {old!r}"
    path.write_text(text.replace(old, new))


# --- 1. not UTF-8 ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pyproject.toml", ORDER, "shared/discount_calculator/pyproject.toml"])
def test_a_pyproject_that_is_not_utf8_names_the_file_line_and_byte(repo: Path, name: str) -> None:
    path = repo / name
    original = path.read_bytes()
    path.write_bytes(original + b"# caf\xe9 (saved as latin-1)\n")
    before = State.of(repo)

    line = one_line(invoke(repo, "build-wheels", check=False))

    offset = len(original) + len(b"# caf")
    number = original.count(b"\n") + 1
    assert line == f"error: {name}:{number}: not UTF-8 (byte 0xe9 at offset {offset}); TOML files must be UTF-8"
    assert_untouched(repo, before)


@pytest.mark.parametrize("command", [("build-wheels",), ("release", "--skip-gates")], ids=["build-wheels", "release"])
def test_a_readme_that_is_not_utf8_names_the_package_and_the_file_not_the_backends_decode_error(repo: Path, command: tuple[str, ...]) -> None:
    # hatchling used to fail with "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9"
    # naming no file; the release reads the committed one, build-wheels the working tree's.
    (repo / "services/order/README.md").write_bytes(b"# Orders\n\nDiscounts for every caf\xe9 (saved as latin-1).\n")
    subprocess.run(["git", "commit", "-qam", "a latin-1 readme"], cwd=repo, check=True, capture_output=True)
    before = State.of(repo)

    line = one_line(invoke(repo, *command, check=False))

    assert line == (
        "error: services/order (order-manager): services/order/README.md, its [project] readme, is not UTF-8 "
        "(byte 0xe9 on line 3, offset 33); its build backend reads it as UTF-8: save it as UTF-8"
    )
    assert_untouched(repo, before)
    assert not (repo / "dist").exists()


# --- 2. service names that Docker refuses ----------------------------------------------


@pytest.mark.parametrize("name", ["OrderManager", "Order Svc", "-order", "order..v2", "order_"])
def test_a_service_directory_that_is_no_docker_name_is_never_renamed_its_distribution_name_stands_in_and_says_so(repo: Path, name: str) -> None:
    shutil.copytree(repo / "services" / "order", repo / "services" / name)
    edit(repo, f"services/{name}/pyproject.toml", 'name = "order-manager"', 'name = "Order_Manager.Two"')

    listed = invoke(repo, "services")

    assert listed.stdout.split() == ["order", "order-manager-two", "pricing-audit", "user"]
    assert listed.stderr == (
        f"note: services/{name}: service 'order-manager-two', its distribution name: its directory's name {name!r} is not a Docker repository name "
        "(lowercase letters and digits, separated by '.', '_', '__' or dashes); [tool.wheelpipe.service] name = \"...\" chooses another\n"
    )


@pytest.mark.parametrize("value", ['"Order"', '"order svc"', '""', "3", '"../order"'])
def test_a_service_name_in_the_table_that_docker_refuses_is_one_line_and_nothing_is_written(repo: Path, value: str) -> None:
    edit(repo, "services/order/pyproject.toml", "[tool.wheelpipe.service]\n", f"[tool.wheelpipe.service]\nname = {value}\n")
    before = State.of(repo)

    line = one_line(invoke(repo, "build-wheels", check=False))

    assert line.startswith("error: services/order/pyproject.toml: [tool.wheelpipe.service] name must be a Docker repository name (lowercase"), line
    assert_untouched(repo, before)


@pytest.mark.parametrize(("value", "says"), [('"user"', "two services named 'user'"), ('"dev"', "a service cannot be named 'dev'; requirements/dev.txt is")])
def test_a_service_name_taken_by_another_service_or_a_lock_is_one_line(repo: Path, value: str, says: str) -> None:
    edit(repo, "services/order/pyproject.toml", "[tool.wheelpipe.service]\n", f"[tool.wheelpipe.service]\nname = {value}\n")
    before = State.of(repo)

    line = one_line(invoke(repo, "build-wheels", check=False))

    assert says in line and line.endswith("name)" if "two" not in says else "name in one of them)"), line
    assert_untouched(repo, before)


def test_a_service_named_by_its_table_is_that_name_everywhere_and_says_so(repo: Path) -> None:
    edit(repo, "services/order/pyproject.toml", "[tool.wheelpipe.service]\n", '[tool.wheelpipe.service]\nname = "orders"\n')

    listed = invoke(repo, "services")

    assert listed.stdout.split() == ["orders", "pricing-audit", "user"]
    assert listed.stderr == "note: services/order: service 'orders', as [tool.wheelpipe.service] name says\n"
    assert load_repository(repo).lock_path("orders") == repo.resolve() / "requirements" / "orders.txt"


def test_dots_dashes_and_underscores_inside_a_service_name_are_accepted(repo: Path) -> None:
    name = "user.v2-next__beta_1"
    shutil.copytree(repo / "services" / "user", repo / "services" / name)
    edit(repo, f"services/{name}/pyproject.toml", 'name = "user-manager"', 'name = "user-manager-two"')

    listed = invoke(repo, "services")

    assert listed.stdout.split() == ["order", "pricing-audit", "user", name]


# --- 3. --service "" -------------------------------------------------------------------


@pytest.mark.parametrize("task", ["build-wheels", "lock", "image"])
def test_an_empty_service_name_is_an_error_not_every_service(repo: Path, task: str) -> None:
    before = State.of(repo)

    line = one_line(invoke(repo, task, "--service", "", check=False))

    assert line == "error: empty service name: expected one of order, pricing-audit, user"
    assert_untouched(repo, before)


# --- 4. the boundary: a read-only or full disk, and Ctrl-C -----------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system and chattr need root")


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[None]:
    if not shutil.which("chattr"):
        pytest.skip("chattr is not installed (Debian: e2fsprogs)")
    if subprocess.run(["chattr", "+i", directory], capture_output=True, check=False).returncode != 0:
        pytest.skip(f"chattr +i is not supported on the file system of {directory}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", directory], check=True)


@contextlib.contextmanager
def mounted(directory: Path, *options: str | Path) -> Iterator[None]:
    mount = subprocess.run(["mount", *options, directory], capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount here: {mount.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", directory], check=True)


@needs_root
@pytest.mark.parametrize(
    ("protection", "reason"),
    [("immutable", "Operation not permitted"), ("read-only mount", "Read-only file system")],
)
def test_a_read_only_wheelhouse_store_is_one_line_naming_the_file(repo: Path, protection: str, reason: str) -> None:
    (repo / SOURCE_EDIT).write_text((repo / SOURCE_EDIT).read_text() + "# changed, so there is a wheel to build\n")
    store = repo / ".wheelhouse"
    before = State.of(repo)

    guard = immutable(store) if protection == "immutable" else mounted(store, "--bind", "-o", "ro", store)
    with guard:
        line = one_line(invoke(repo, "build-wheels", check=False))

    assert re.fullmatch(rf"error: \.wheelhouse/[^:]+: {reason}", line), line
    assert_untouched(repo, before)


@needs_root
def test_an_immutable_root_fails_the_switch_and_leaves_no_generation_behind(repo: Path) -> None:
    # The whole new generation is built in .wheelhouse/; only the symlink beside it in the
    # root cannot be made. That generation used to stay, named by nothing.
    (repo / SOURCE_EDIT).write_text((repo / SOURCE_EDIT).read_text() + "# changed, so there is a wheel to build\n")
    before = State.of(repo)
    generations = sorted(p.name for p in (repo / ".wheelhouse").iterdir())

    with immutable(repo):
        line = one_line(invoke(repo, "build-wheels", check=False))

    assert re.fullmatch(
        r"error: wheelhouse: cannot point it at the new generation \(\.wheelhouse/(gen-\w+) -> \.wheelhouse\.\1: Operation not permitted\); "
        r"the previous wheelhouse is intact, nothing of the new one is left",
        line,
    ), line
    assert sorted(p.name for p in (repo / ".wheelhouse").iterdir()) == generations
    assert_untouched(repo, before)


@needs_root
def test_a_full_disk_is_reported_as_such_not_as_a_hash_mismatch(repo: Path) -> None:
    (repo / "wheelhouse").unlink()
    shutil.rmtree(repo / ".wheelhouse")
    store = repo / ".wheelhouse"
    store.mkdir()
    before = State.of(repo)

    with mounted(store, "-t", "tmpfs", "-o", "size=64k", "tmpfs"):
        line = one_line(invoke(repo, "build-wheels", check=False))

    assert re.fullmatch(r"error: no space left on device while writing \.wheelhouse/\S+", line), line
    assert "mismatch" not in line and "sha256" not in line
    assert_untouched(repo, before)
    assert not (repo / "wheelhouse").exists()


# hatchling, held: its build_wheel says it started (touches the marker), then waits to be
# interrupted, so that Ctrl-C lands during a first-party build on every run, however fast the
# build or slow the machine (a real one-wheel build can finish before a signal arrives).
HELD_BACKEND = """\
import pathlib
import time

from hatchling.build import *  # noqa: F403 - every hook hatchling has, but the one held
from hatchling.build import build_wheel as _build_wheel

MARKER = pathlib.Path({marker!r})


def build_wheel(*args, **kwargs):
    MARKER.touch()
    time.sleep(300)
    return _build_wheel(*args, **kwargs)
"""


def test_ctrl_c_during_build_wheels_keeps_the_previous_wheelhouse(repo: Path, tmp_path: Path) -> None:
    package = repo / "shared" / "service_runtime"
    marker = tmp_path / "build-started"
    (package / "_held").mkdir()
    (package / "_held" / "held.py").write_text(HELD_BACKEND.format(marker=str(marker)))
    edit(repo, "shared/service_runtime/pyproject.toml", 'build-backend = "hatchling.build"', 'build-backend = "held"\nbackend-path = ["_held"]')
    before = State.of(repo)
    # Its own session: the signal reaches invoke and the build tools it started, as Ctrl-C
    # reaches a terminal's foreground process group, and not this test.
    build = subprocess.Popen(
        [sys.executable, "-m", "invoke", "build-wheels"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    watchdog = threading.Timer(120, lambda: os.killpg(build.pid, signal.SIGKILL))
    watchdog.start()
    try:
        deadline = time.monotonic() + 100
        while not marker.exists() and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        started = marker.exists()
        if started:
            os.killpg(build.pid, signal.SIGINT)
        stdout, stderr = build.communicate()
        code = build.returncode
    finally:
        watchdog.cancel()
    assert started, f"build-wheels never started the held build (exit {build.returncode}):\n{stderr}"

    line = one_line(subprocess.CompletedProcess(build.args, code, stdout, stderr), prefix="interrupted", code=130)
    assert line == "interrupted: the previous wheelhouse is intact"
    assert "error:" not in stderr
    assert_untouched(repo, before)


def test_a_full_disk_while_the_gzip_archive_is_written_names_the_archive_and_the_handler_does_not_raise(tmp_path: Path) -> None:
    # gzip.GzipFile keeps its mode as a number: the handler once raised TypeError on it.
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    archive_name = str(tmp_path / "dist" / "wheelhouse-0.1.0.tar.gz")
    with pytest.raises(OSError) as caught, full.open("wb", buffering=0) as raw, gzip.GzipFile(filename=archive_name, mode="wb", fileobj=raw) as archive:
        archive.write(os.urandom(1 << 16))
        archive.flush()
    assert describe_os_error(caught.value, tmp_path) == "no space left on device while writing dist/wheelhouse-0.1.0.tar.gz"


def test_a_failed_write_names_the_open_file_the_os_did_not_name(tmp_path: Path) -> None:
    full = Path("/dev/full")  # every write to it fails with ENOSPC, and the error names no file
    if not full.exists():
        pytest.skip("no /dev/full here")
    with full.open("wb", buffering=0) as stream, pytest.raises(OSError) as caught:
        stream.write(b"x")
    assert caught.value.filename is None
    assert describe_os_error(caught.value, tmp_path) == "no space left on device while writing /dev/full"


def test_an_os_error_about_two_files_names_both_relative_to_the_root(tmp_path: Path) -> None:
    (tmp_path / "partial").mkdir()
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "kept").touch()
    with pytest.raises(OSError) as caught:
        os.rename(tmp_path / "partial", tmp_path / "gen")
    assert describe_os_error(caught.value, tmp_path) == "partial -> gen: Directory not empty"


# --- 5. GITHUB_OUTPUT that cannot be appended to ----------------------------------------


@pytest.mark.parametrize("task", [["services"], ["affected", "--since", "HEAD"]], ids=["services", "affected"])
@pytest.mark.parametrize("where", ["missing directory", "a directory"])
def test_an_unwritable_github_output_is_one_line_naming_the_path(repo: Path, tmp_path: Path, task: list[str], where: str) -> None:
    if where == "missing directory":
        target, problem = tmp_path / "no-such-dir" / "output", f"its directory {tmp_path / 'no-such-dir'} does not exist"
    else:
        target, problem = tmp_path, "it is a directory, expected a file"
    before = State.of(repo)

    line = one_line(invoke(repo, *task, "--github-output", env={"GITHUB_OUTPUT": str(target)}, check=False))

    assert line == f"error: --github-output: cannot append to GITHUB_OUTPUT={target}: {problem}"
    assert not (tmp_path / "no-such-dir").exists()
    assert_untouched(repo, before)


def test_a_file_name_that_is_not_utf8_still_counts_for_affected(repo: Path) -> None:
    (repo / os.fsdecode(b"services/order/src/order_manager/caf\xe9.json")).write_text("{}")
    before = State.of(repo)

    result = invoke(repo, "affected", "--since", "HEAD", check=False)

    assert "Traceback" not in result.stdout + result.stderr
    assert (result.returncode, result.stdout.split()) == (0, ["order"]), result.stderr
    assert_untouched(repo, before)


# --- 6. pyproject.toml tables and values of the wrong type -------------------------------

ROOT_RELEASE = re.compile(r"\[tool\.wheelpipe\.release\]\n(#.*\n)*version = \"[^\"]*\"\n")


def release_as_a_string(text: str) -> str:
    """`release = "0.1.0"` where a [tool.wheelpipe.release] table belongs."""
    assert ROOT_RELEASE.search(text), "the root pyproject.toml no longer has a release table"
    return ROOT_RELEASE.sub("", text) + '\n[tool.wheelpipe]\nrelease = "0.1.0"\n'


MALFORMED: dict[str, tuple[str, Callable[[str], str], str]] = {
    "root tool is a string": ("pyproject.toml", lambda text: 'tool = "wheelpipe"\n', r"pyproject\.toml: \[tool\] must be a table, found 'wheelpipe'"),
    "root tool.wheelpipe is a string": ("pyproject.toml", lambda text: '[tool]\nwheelpipe = "enabled"\n', r"pyproject\.toml: \[tool\.wheelpipe\] must be a table, found 'enabled'"),
    "root release is a string": ("pyproject.toml", release_as_a_string, r"pyproject\.toml: \[tool\.wheelpipe\.release\] must be a table, found '0\.1\.0'"),
    "root starts with a BOM": ("pyproject.toml", lambda text: "\ufeff" + text, r"pyproject\.toml: starts with a byte-order mark"),
    "project is a string": (ORDER, lambda text: 'project = "order-manager"\n', rf"{ORDER}: expected a \[project\] table with a name, found 'order-manager'"),
    "name is a number": (ORDER, lambda text: text.replace('name = "order-manager"', "name = 42"), rf"{ORDER}: \[project\] name must be a distribution name .*, found 42"),
    "name has a space": (ORDER, lambda text: text.replace('name = "order-manager"', 'name = "order manager"'), rf"{ORDER}: \[project\] name must be a distribution name .*, found 'order manager'"),
    "scripts is a string": (
        ORDER,
        lambda text: text.replace('[project.scripts]\norder-manager = "order_manager.server:main"\n', "").replace("dependencies = [", 'scripts = "order-manager"\ndependencies = [', 1),
        rf"{ORDER}: \[project\.scripts\] must be a table of console scripts, found 'order-manager'",
    ),
    "tool.wheelpipe is a string": (ORDER, lambda text: text.split("[tool.wheelpipe.service]")[0] + '[tool]\nwheelpipe = "service"\n', rf"{ORDER}: \[tool\.wheelpipe\] must be a table, found 'service'"),
    "service is a string": (ORDER, lambda text: text.split("[tool.wheelpipe.service]")[0] + '[tool.wheelpipe]\nservice = "order-manager"\n', rf"{ORDER}: \[tool\.wheelpipe\.service\] must be a table, found 'order-manager'"),
    "sources is a list": (
        "shared/discount_calculator/pyproject.toml",
        lambda text: text + '\n[tool.wheelpipe]\nsources = ["service-runtime"]\n',
        r"shared/discount_calculator/pyproject\.toml: \[tool\.wheelpipe\.sources\] must be a table, found \['service-runtime'\]",
    ),
    "default-port is a boolean": (ORDER, lambda text: text.replace("default-port = 8001", "default-port = true"), rf"{ORDER}: \[tool\.wheelpipe\.service\] port must be the port the service listens on \(1-65535\) for kind \"http\", found True"),
    "port-env has spaces": (ORDER, lambda text: text.replace('port-env = "ORDER_MANAGER_PORT"', 'port-env = "ORDER MANAGER PORT"'), rf"{ORDER}: \[tool\.wheelpipe\.service\] port-env must be the name of the environment variable the service reads its port from .* found 'ORDER MANAGER PORT'"),
    "arrays nested too deeply": (ORDER, lambda text: "nested = " + "[" * 5000 + "]" * 5000 + "\n" + text, rf"{ORDER}: arrays or inline tables nested too deeply to parse"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_pyproject_is_one_line_naming_the_file(repo: Path, case: str) -> None:
    name, change, expected = MALFORMED[case]
    path = repo / name
    changed = change(path.read_text())
    assert changed != path.read_text()
    path.write_text(changed)
    before = State.of(repo)

    line = one_line(invoke(repo, "services", check=False))

    assert re.fullmatch(f"error: {expected}.*", line), line
    assert_untouched(repo, before)


def test_a_first_party_backend_that_is_not_installed_is_one_line_naming_it(repo: Path) -> None:
    edit(repo, "shared/discount_calculator/pyproject.toml", 'build-backend = "hatchling.build"', 'build-backend = "flit_core_missing.buildapi"')
    before = State.of(repo)
    line = one_line(invoke(repo, "build-wheels", check=False))
    assert line == (
        "error: shared/discount_calculator (discount-calculator): no distribution in the build environment from requirements/build.txt "
        "provides its build backend 'flit_core_missing.buildapi'; add the one that does to [build-system] requires and run `invoke lock`"
    )
    assert_untouched(repo, before)
