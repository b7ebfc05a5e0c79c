"""What ships is what was committed: first-party wheels come from a clean staged copy of the
package's files (the commit for a release), symlinks and file names are checked, a dirty
release says so, and large files are streamed, never held in memory."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from monorepo import FIXTURE, ROOT, commit_all, copy_repository, git, invoke, member_bytes

from wheelpipe import load_repository
from wheelpipe.build import firstparty

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

ARCHIVE = "dist/wheelhouse-0.1.0.tar.gz"
DIRTY_ARCHIVE = "dist/wheelhouse-0.1.0-dirty.tar.gz"
ORDER_MODULE = "services/order/src/order_manager"
# The bound the streaming test asserts, and a file several times larger: a pipeline that
# read it whole would need at least the file's size in memory.
MEMORY_BOUND_MB = 200
LARGE_FILE_MB = 640


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the monorepo, released once (its wheelhouse built from the commit)."""
    repository = copy_repository(tmp_path_factory.mktemp("released") / "monorepo")
    invoke(repository, "release", "--skip-gates")
    return repository


@pytest.fixture
def repository(released: Path, tmp_path: Path) -> Path:
    """A copy of the released repository (git, wheelhouse and all) with no dist/."""
    copy = tmp_path / "monorepo"
    shutil.copytree(released, copy, symlinks=True)
    shutil.rmtree(copy / "dist")
    return copy


def wheel_files(archive: Path) -> dict[str, dict[str, bytes]]:
    """Every wheel in a release archive: its file name -> {path in the wheel: bytes}."""
    found = {}
    with tarfile.open(archive) as bundle:
        for member in bundle.getmembers():
            if member.name.endswith(".whl"):
                with zipfile.ZipFile(io.BytesIO(member_bytes(bundle, member))) as wheel:
                    found[Path(member.name).name] = {name: wheel.read(name) for name in wheel.namelist()}
    return found


def released_manifest(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as bundle:
        (member,) = [m for m in bundle.getmembers() if m.name.endswith("/manifest.json")]
        document: dict[str, Any] = json.loads(member_bytes(bundle, member))
        return document


def order_wheel(files: dict[str, dict[str, bytes]]) -> dict[str, bytes]:
    return next(contents for name, contents in files.items() if name.startswith("order_manager-"))


def wheelhouse_state(repository: Path) -> tuple[str, list[str]]:
    """The wheelhouse symlink and every generation: equal before and after means nothing was written."""
    return os.readlink(repository / "wheelhouse"), sorted(p.name for p in (repository / ".wheelhouse").iterdir())


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_an_untracked_file_in_a_service_is_in_no_released_wheel(repository: Path) -> None:
    secret = repository / ORDER_MODULE / "secret.py"
    secret.write_text("TOKEN = 'never committed'\n")
    invoke(repository, "release", "--skip-gates")
    shipped = wheel_files(repository / ARCHIVE)
    assert not [name for files in shipped.values() for name in files if name.endswith("secret.py")]
    release = released_manifest(repository / ARCHIVE)["release"]
    assert release["commit"] == git(repository, "rev-parse", "HEAD").strip() and release["dirty"] is False
    assert secret.read_text() == "TOKEN = 'never committed'\n"
    # The file is one a build of the working tree does take: the release left it out on purpose.
    invoke(repository, "build-wheels")
    wheel = next((repository / "wheelhouse").glob("order_manager-*.whl"))
    assert "order_manager/secret.py" in zipfile.ZipFile(wheel).namelist()


def test_an_untracked_file_in_a_service_stops_the_release_gate_naming_it_not_asking_for_build_wheels(repository: Path) -> None:
    # The gate runs the working tree's tests against the commit's wheels: the plugin called
    # the wheel stale and said to run `invoke build-wheels`, which cannot help.
    (repository / ORDER_MODULE / "draft.py").write_text("DRAFT = True\n")
    before = wheelhouse_state(repository)
    result = invoke(repository, "release", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == (
        f"error: {ORDER_MODULE}/draft.py: untracked, and a release is made of committed files, so its packages' tests "
        "cannot run against the wheels it ships while the working tree has it; commit it, or pass --allow-dirty"
    )
    assert "build-wheels" not in error_line(result)
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before
    # As it says: --allow-dirty releases the working tree, the file included.
    invoke(repository, "release", "--allow-dirty")
    assert "order_manager/draft.py" in order_wheel(wheel_files(repository / DIRTY_ARCHIVE))


def test_an_ignored_file_is_in_no_wheel_from_the_commit_or_the_working_tree(repository: Path) -> None:
    # .git/info/exclude: an ignore rule that hatchling, reading only .gitignore, never saw.
    (repository / ".git/info/exclude").write_text("credentials.json\n")
    (repository / ORDER_MODULE / "credentials.json").write_text('{"password": "hunter2"}\n')
    invoke(repository, "release", "--skip-gates")
    assert not [n for files in wheel_files(repository / ARCHIVE).values() for n in files if "credentials" in n]
    result = invoke(repository, "build-wheels")
    assert "nothing to build" in result.stderr
    wheel = next((repository / "wheelhouse").glob("order_manager-*.whl"))
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if "credentials" in n]


@pytest.mark.parametrize("command", [("release", "--skip-gates"), ("build-wheels",)], ids=["release", "build-wheels"])
@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../outside.txt"], ids=["absolute", "relative"])
def test_a_committed_symlink_to_outside_the_repository_is_refused_naming_it(repository: Path, command: tuple[str, ...], target: str) -> None:
    (repository.parent / "outside.txt").write_text("not the repository's\n")
    (repository / ORDER_MODULE / "leak.txt").symlink_to(target)
    commit_all(repository, "a symlink out of the repository")
    before = wheelhouse_state(repository)
    result = invoke(repository, *command, check=False)
    assert result.returncode == 1
    assert error_line(result) == f"error: {ORDER_MODULE}/leak.txt: symlink to a path outside the repository ({target})"
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


@pytest.mark.parametrize("command", [("release", "--skip-gates"), ("build-wheels",)], ids=["release", "build-wheels"])
def test_a_dangling_symlink_in_a_package_is_refused_naming_it(repository: Path, command: tuple[str, ...]) -> None:
    (repository / ORDER_MODULE / "gone.txt").symlink_to("missing.txt")
    commit_all(repository, "a symlink to nothing")
    before = wheelhouse_state(repository)
    result = invoke(repository, *command, check=False)
    assert result.returncode == 1
    assert error_line(result) == f"error: {ORDER_MODULE}/gone.txt: dangling symlink: its target missing.txt does not exist"
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


def test_a_symlink_to_a_directory_of_the_repository_ships_the_files_git_sees_there(repository: Path) -> None:
    """A team's symlinked directory (a vendored copy of a shared module, say) is followed, not
    refused: its target's tracked files ship under the link's name, from the commit and from the
    working tree alike."""
    linked = repository / "shared/discount_calculator/src/discount_calculator"
    (linked / "scratch.txt").write_text("untracked and ignored\n")
    (repository / ".git/info/exclude").write_text("scratch.txt\n")
    (repository / ORDER_MODULE / "vendored").symlink_to("../../../../shared/discount_calculator/src/discount_calculator")
    commit_all(repository, "a symlink to a directory")
    invoke(repository, "release", "--skip-gates")
    wheel = order_wheel(wheel_files(repository / ARCHIVE))
    shipped = sorted(name.removeprefix("order_manager/vendored/") for name in wheel if name.startswith("order_manager/vendored/"))
    assert shipped == ["__init__.py", "discount.py", "py.typed"]
    assert wheel["order_manager/vendored/discount.py"] == (linked / "discount.py").read_bytes()
    # The working tree and the commit agree on what the link stands for: the wheel is reused.
    assert "nothing to build" in invoke(repository, "build-wheels").stderr


@pytest.mark.parametrize("command", [("release", "--skip-gates"), ("build-wheels",)], ids=["release", "build-wheels"])
def test_a_symlink_to_a_directory_outside_the_repository_is_refused_naming_it(repository: Path, command: tuple[str, ...]) -> None:
    (repository.parent / "outside").mkdir()
    (repository.parent / "outside" / "secret.py").write_text("TOKEN = 'not the repository's'\n")
    (repository / ORDER_MODULE / "vendored").symlink_to("../../../../../outside")
    commit_all(repository, "a symlink to a directory out of the repository")
    before = wheelhouse_state(repository)
    result = invoke(repository, *command, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == f"error: {ORDER_MODULE}/vendored: symlink to a path outside the repository (../../../../../outside)"
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


@pytest.mark.parametrize("command", [("release", "--skip-gates"), ("build-wheels",)], ids=["release", "build-wheels"])
def test_a_symlink_to_a_directory_that_holds_it_is_a_loop_named_in_one_line(repository: Path, command: tuple[str, ...]) -> None:
    (repository / ORDER_MODULE / "again").symlink_to("..")
    commit_all(repository, "a symlink to its own parent")
    before = wheelhouse_state(repository)
    result = invoke(repository, *command, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == f"error: {ORDER_MODULE}/again: symlink loop: .. leads back to a directory that holds the link"
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


@pytest.mark.parametrize("command", [("release", "--skip-gates"), ("build-wheels",)], ids=["release", "build-wheels"])
def test_two_file_symlinks_pointing_at_each_other_are_a_loop_not_a_dangling_link(repository: Path, command: tuple[str, ...]) -> None:
    # realpath gives up on a -> b -> a without a word: the working tree once called it dangling.
    (repository / ORDER_MODULE / "one.txt").symlink_to("two.txt")
    (repository / ORDER_MODULE / "two.txt").symlink_to("one.txt")
    commit_all(repository, "two links pointing at each other")
    before = wheelhouse_state(repository)
    result = invoke(repository, *command, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == f"error: {ORDER_MODULE}/one.txt: symlink loop: its target two.txt leads round a circle of symlinks, never to a file"
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


def test_a_symlink_inside_the_repository_ships_as_the_file_it_points_at(repository: Path) -> None:
    (repository / ORDER_MODULE / "NOTICE.txt").symlink_to("../../../../README.md")
    commit_all(repository, "a symlink to the root README")
    invoke(repository, "release", "--skip-gates")
    wheel = order_wheel(wheel_files(repository / ARCHIVE))
    assert wheel["order_manager/NOTICE.txt"] == (repository / "README.md").read_bytes()
    # The working tree and the commit agree on what the link is: the wheel is reused.
    assert "nothing to build" in invoke(repository, "build-wheels").stderr


def test_a_symlink_to_an_ignored_file_is_refused_in_the_working_tree(repository: Path) -> None:
    (repository / ".env").write_text("PASSWORD=hunter2\n")
    (repository / ".git/info/exclude").write_text(".env\n")
    (repository / ORDER_MODULE / "settings.env").symlink_to("../../../../.env")
    before = wheelhouse_state(repository)
    result = invoke(repository, "build-wheels", check=False)
    assert result.returncode == 1
    assert error_line(result) == f"error: {ORDER_MODULE}/settings.env: symlink to a file git ignores (../../../../.env)"
    assert wheelhouse_state(repository) == before


def test_allow_dirty_releases_the_modified_working_tree_and_marks_it(repository: Path) -> None:
    orders = repository / ORDER_MODULE / "orders.py"
    modified = orders.read_text() + '\nRELEASED_FROM = "a modified working tree"\n'
    orders.write_text(modified)
    refused = invoke(repository, "release", "--skip-gates", check=False)
    assert refused.returncode == 1 and "uncommitted changes" in error_line(refused)
    assert not (repository / "dist").exists()

    invoke(repository, "release", "--skip-gates", "--allow-dirty")
    assert not (repository / ARCHIVE).exists()
    release = released_manifest(repository / DIRTY_ARCHIVE)["release"]
    assert release["commit"] == git(repository, "rev-parse", "HEAD").strip() + "-dirty"
    assert release["dirty"] is True
    assert order_wheel(wheel_files(repository / DIRTY_ARCHIVE))["order_manager/orders.py"].decode() == modified
    with tarfile.open(repository / DIRTY_ARCHIVE) as bundle:
        assert {name.split("/")[0] for name in bundle.getnames()} == {"wheelhouse-0.1.0-dirty"}


def test_allow_dirty_on_a_clean_tree_gives_the_clean_release(released: Path, repository: Path) -> None:
    invoke(repository, "release", "--skip-gates", "--allow-dirty")
    assert not (repository / DIRTY_ARCHIVE).exists()
    assert (repository / ARCHIVE).read_bytes() == (released / ARCHIVE).read_bytes()


def test_a_file_name_that_is_not_utf8_is_refused_naming_package_and_name(repository: Path) -> None:
    name = os.fsencode(repository / ORDER_MODULE) + b"/caf\xe9.py"
    with open(name, "wb") as stream:
        stream.write(b"COFFEE = True\n")
    commit_all(repository, "a file name in Latin-1")
    before = wheelhouse_state(repository)
    result = invoke(repository, "release", "--skip-gates", check=False)
    assert result.returncode == 1
    assert error_line(result) == "error: services/order: file name 'src/order_manager/caf\\xe9.py' is not valid UTF-8; rename it"
    assert "Traceback" not in result.stderr
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


def test_dist_being_a_file_stops_the_release_before_anything_is_written(repository: Path) -> None:
    (repository / "dist").write_text("someone's notes\n")
    before = wheelhouse_state(repository)
    result = invoke(repository, "release", "--skip-gates", check=False)
    assert result.returncode == 1
    assert error_line(result) == "error: dist: exists and is not a directory; move it away"
    assert (repository / "dist").read_text() == "someone's notes\n"
    assert wheelhouse_state(repository) == before


def _drop_pin(manifest: Path, name: str) -> None:
    lines = manifest.read_text().splitlines(keepends=True)
    pin = next(i for i, line in enumerate(lines) if line.startswith(f"{name}=="))
    manifest.write_text("".join(lines[:pin] + lines[pin + 2 :]))  # the pin and its hash line


def test_a_damaged_install_manifest_in_the_wheelhouse_never_ships(repository: Path, tmp_path: Path) -> None:
    _drop_pin(repository / "wheelhouse/install/order.txt", "blinker")
    before = wheelhouse_state(repository)
    result = invoke(repository, "release", "--skip-gates", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = error_line(result)
    assert line.startswith("error: wheelhouse/install/order.txt: not what wheelhouse/manifest.json gives: blinker==1.9.0 (sha256 "), line
    assert line.endswith(" missing; rebuild with `invoke build-wheels --clean`"), line
    assert not (repository / "dist").exists() and wheelhouse_state(repository) == before
    # Made anew from the wheels and the locks, never from the damaged file, it ships whole.
    invoke(repository, "build-wheels", "--clean")
    invoke(repository, "release", "--skip-gates")
    with tarfile.open(repository / ARCHIVE) as bundle:
        bundle.extractall(tmp_path / "unpacked", filter="data")
    root = tmp_path / "unpacked/wheelhouse-0.1.0"
    assert "\nblinker==1.9.0 \\\n" in (root / "install/order.txt").read_text()
    assert "pkg:pypi/blinker@" in (root / "sbom/order.cdx.json").read_text()
    checked = subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=root, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout


def test_an_install_manifest_damaged_after_the_build_is_derived_again_not_copied(repository: Path) -> None:
    """Between build-wheels and the archive nothing is read back from the wheelhouse's
    derived files: the install manifest and its SBOM are made from the locks and wheels."""
    from wheelpipe import manifests, release, wheelhouse

    repo = load_repository(repository)
    house = wheelhouse.open_wheelhouse(repository)
    commit = release.commit_of(repo, allow_dirty=False)
    _drop_pin(house.install_manifest("order", house.targets[0]), "blinker")
    members = {m.name: m for m in release._members(repo, house, commit, commit.source(repository), manifests.released(commit.source(repository)), None)}
    install, sbom = members["wheelhouse-0.1.0/install/order.txt"].data, members["wheelhouse-0.1.0/sbom/order.cdx.json"].data
    assert install is not None and sbom is not None  # documents made in memory, not wheels streamed from disk
    assert "\nblinker==1.9.0 \\\n" in install.decode()
    assert "pkg:pypi/blinker@" in sbom.decode()


def test_the_fingerprint_outside_git_covers_the_files_git_would_see(tmp_path: Path) -> None:
    """Without git, the package's files are walked, skipping build and cache output."""
    repo = load_repository(FIXTURE)
    package = repo.packages["discount-calculator"]
    copied = replace(package, path=tmp_path / "plain" / package.directory)
    shutil.copytree(package.path, copied.path)
    (copied.path / "src/discount_calculator/__pycache__").mkdir(exist_ok=True)
    (copied.path / "src/discount_calculator/__pycache__/discount.cpython-311.pyc").write_bytes(b"\0")
    (copied.path / "build").mkdir(exist_ok=True)
    (copied.path / "build/leftover.py").write_text("")
    expected = firstparty.fingerprint(firstparty.WorkingTree(FIXTURE), package)
    assert firstparty.fingerprint(firstparty.WorkingTree(tmp_path / "plain"), copied) == expected


def test_a_wheel_that_changes_while_the_archive_is_written_leaves_no_archive(tmp_path: Path) -> None:
    from wheelpipe import release
    from wheelpipe.errors import ReleaseError

    wheel = tmp_path / "wheelhouse" / "demo-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"the bytes the manifest recorded")
    recorded = release.Member("wheelhouse-0.1.0/demo-0.1.0-py3-none-any.whl", wheel.stat().st_size, "0" * 64, path=wheel)
    target = tmp_path / "dist" / "wheelhouse-0.1.0.tar.gz"
    with pytest.raises(ReleaseError) as raised:
        release.write_archive([recorded], 315532800, target)
    assert str(raised.value).startswith(f"wheelhouse/{wheel.name}: changed while the release was written (expected sha256 {'0' * 64}")
    assert list(target.parent.iterdir()) == []


_STREAMING_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from wheelpipe import release
    from wheelpipe.build import firstparty
    from wheelpipe.fsutil import sha256_file
    from wheelpipe.model import Package

    root = Path(sys.argv[1])
    package = Package("shared", "shared/large", root / "shared/large", "large", "0.1.0", ())
    started = time.monotonic()
    fingerprint = firstparty.fingerprint(firstparty.WorkingTree(root), package)
    large = package.path / "data.bin"
    member = release.Member("large-0.1.0/data.bin", large.stat().st_size, sha256_file(large), path=large)
    release.write_archive([member], 315532800, root / "dist" / "large.tar.gz")
    # VmHWM, this process's own peak: getrusage's ru_maxrss keeps the peak of the process that
    # forked it across exec (here a pytest worker, hundreds of MB after other tests' files).
    peak = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"peak_kb": peak, "fingerprint": fingerprint, "seconds": time.monotonic() - started}))
    """
)


def test_large_files_are_fingerprinted_and_archived_in_bounded_memory(tmp_path: Path) -> None:
    root = tmp_path / "repository"
    (root / "shared/large").mkdir(parents=True)
    git(root, "init", "-q")
    (root / "shared/large/pyproject.toml").write_text('[project]\nname = "large"\nversion = "0.1.0"\n')
    with open(root / "shared/large/data.bin", "wb") as stream:
        stream.truncate(LARGE_FILE_MB << 20)  # sparse: no disk used, zeros read back
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.run([sys.executable, "-c", _STREAMING_CHILD, root], capture_output=True, text=True, env=env, check=False)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["peak_kb"] < MEMORY_BOUND_MB * 1024, report
    assert len(report["fingerprint"]) == 64
    with tarfile.open(root / "dist/large.tar.gz") as bundle:
        member = bundle.next()
        while member is not None and member.isdir():
            member = bundle.next()
        assert member is not None
        assert (member.name, member.size) == ("large-0.1.0/data.bin", LARGE_FILE_MB << 20)
    assert not [p for p in (root / "dist").iterdir() if p.name.endswith(".tmp")]


# --- a release and the runs beside it ---------------------------------------------------

KILLED_WRITER = """\
import os
import signal
import sys
from pathlib import Path

from wheelpipe.fsutil import atomic_output

with atomic_output(Path(sys.argv[1])) as stream:
    stream.write(b"half an archive")
    stream.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_release_removes_the_temporary_archive_a_killed_release_left_in_dist(repository: Path) -> None:
    # The archive's own writer (atomic_output, as write_archive uses it) killed with SIGKILL
    # mid-write: nothing runs to remove its temporary file, which no later release removed.
    (repository / "dist").mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, repository / ARCHIVE], capture_output=True, check=False)
    assert killed.returncode == -9, killed.stderr
    (left,) = (repository / "dist").glob(".wheelhouse-0.1.0.tar.gz.*.tmp")
    mine = repository / "dist" / "notes.tmp"  # not of the release's naming: not its to remove
    mine.write_text("the team's\n")

    result = invoke(repository, "release", "--skip-gates")
    assert f"removed dist/{left.name}, the unfinished archive of a release that was killed" in result.stderr
    assert sorted(p.name for p in (repository / "dist").iterdir()) == ["notes.tmp", "wheelhouse-0.1.0.tar.gz"]
    with tarfile.open(repository / ARCHIVE) as bundle:
        assert bundle.getmembers()


HELD_GATE_TEST = """\
import pathlib
import time


def test_holds_the_release_gate():
    pathlib.Path({started!r}).touch()
    deadline = time.monotonic() + 240
    while not pathlib.Path({go!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
"""


WAITING = "another run (build-wheels or a release) holds the wheelhouse; waiting for it to finish"


def test_build_wheels_clean_during_a_release_waits_for_it_instead_of_pulling_its_wheels_away(repository: Path, tmp_path: Path) -> None:
    # It used to prune the generation the release was reading: a bare "No such file".
    started, go = tmp_path / "gate-started", tmp_path / "go"
    (repository / "services/order/tests/test_held.py").write_text(HELD_GATE_TEST.format(started=str(started), go=str(go)))
    commit_all(repository, "a package test that holds the release's test gate")
    release = subprocess.Popen([sys.executable, "-m", "invoke", "release"], cwd=repository, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clean = None
    try:
        deadline = time.monotonic() + 300
        while not started.exists() and release.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert started.exists(), f"the release never reached its test gate:\n{release.communicate()[1]}"
        # The clean build's stderr goes to a file the test reads as it grows: the build is held
        # at a known point (it said it waits for the release) before the release may go on,
        # however long a busy machine takes to get it there.
        clean_log = tmp_path / "clean.stderr"
        with clean_log.open("w") as clean_stderr:
            clean = subprocess.Popen([sys.executable, "-m", "invoke", "build-wheels", "--clean"], cwd=repository, stdout=subprocess.DEVNULL, stderr=clean_stderr, text=True)
        deadline = time.monotonic() + 300
        while WAITING not in clean_log.read_text() and clean.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert WAITING in clean_log.read_text(), f"build-wheels --clean did not wait for the release (exit {clean.poll()}):\n{clean_log.read_text()}"
        assert clean.poll() is None, f"build-wheels --clean ran during the release:\n{clean_log.read_text()}"
        go.touch()
        released = release.communicate(timeout=300)
        clean.wait(timeout=300)
    finally:
        go.touch()
        for process in (release, clean):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    assert release.returncode == 0 and "Traceback" not in released[1], released[1]
    assert (repository / ARCHIVE).is_file()
    assert clean.returncode == 0, clean_log.read_text()


# Provenance: the version, the tag and dist/ say what a release is, and a version is
# released once.

FOREIGN = ROOT / "tests" / "packages" / "foreign_monorepo"  # another team's monorepo: version 1.0.0


def set_release_version(repository: Path, version: str) -> None:
    pyproject = repository / "pyproject.toml"
    text = pyproject.read_text()
    start = text.index("[tool.wheelpipe.release]")
    at = text.index("version = ", start)
    end = text.index("\n", at)
    pyproject.write_text(text[:at] + f"version = {json.dumps(version)}" + text[end:])


@pytest.mark.parametrize(("typed", "normal"), [("0.1.0 ", "0.1.0"), ("v1.0", "1.0"), ("1.0.0-RC1", "1.0.0rc1"), ("01.2", "1.2")])
@pytest.mark.parametrize("source", [FIXTURE, FOREIGN], ids=["ours", "foreign"])
def test_a_release_version_not_in_its_normal_form_is_refused_naming_the_normal_form(tmp_path: Path, source: Path, typed: str, normal: str) -> None:
    repository = copy_repository(tmp_path / "monorepo", source)
    set_release_version(repository, typed)
    commit_all(repository, "a version as typed")
    result = invoke(repository, "release", "--skip-gates", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == f"error: pyproject.toml: [tool.wheelpipe.release] version {typed!r} is not in its normal form: write {normal!r}"
    assert not (repository / "dist").exists()


CI_TAG = {"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v9.9.9", "GITHUB_REF": "refs/tags/v9.9.9"}


@pytest.mark.parametrize(
    ("args", "env", "tag", "given_by"),
    [
        ([], CI_TAG, "v9.9.9", "GITHUB_REF_NAME"),
        ([], {"GITHUB_REF": "refs/tags/v9.9.9"}, "v9.9.9", "GITHUB_REF"),
        (["--tag", "v9.9.9"], {}, "v9.9.9", "--tag"),
        (["--tag", "{version}"], {}, "{version}", "--tag"),  # the version without its v
        (["--tag", ""], {}, "", "--tag"),  # an unset CI variable
    ],
    ids=["github-ref-name", "github-ref", "option", "no-v", "empty"],
)
@pytest.mark.parametrize("source", [FIXTURE, FOREIGN], ids=["ours", "foreign"])
def test_a_tag_that_is_not_v_version_is_refused_naming_tag_and_version(tmp_path: Path, source: Path, args: list[str], env: dict[str, str], tag: str, given_by: str) -> None:
    repository = copy_repository(tmp_path / "monorepo", source)
    version = load_repository(repository).release_version
    args, tag = [a.format(version=version) for a in args], tag.format(version=version)
    result = invoke(repository, "release", "--skip-gates", *args, check=False, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == (
        f"error: the release is tagged {tag!r} ({given_by}), but [tool.wheelpipe.release] version in pyproject.toml is {version!r}: "
        f"its tag is 'v{version}'; tag the commit whose version it is, or change the version"
    )
    assert not (repository / "dist").exists() and not (repository / "wheelhouse").exists()


def test_head_tagged_with_another_version_is_refused_and_a_given_tag_must_name_head(repository: Path) -> None:
    before = wheelhouse_state(repository)
    head = git(repository, "rev-parse", "HEAD").strip()
    git(repository, "tag", "v9.9.9")
    git(repository, "tag", "deployed-to-staging")  # not a release tag: no version after a v
    result = invoke(repository, "release", "--skip-gates", check=False)
    assert result.returncode == 1
    assert error_line(result) == (
        f"error: HEAD ({head[:12]}) is tagged v9.9.9, but [tool.wheelpipe.release] version in pyproject.toml is '0.1.0', "
        "whose tag is 'v0.1.0'; release the commit its version names, or change the version"
    )
    # The tag a CI run is given must name the commit released.
    git(repository, "tag", "-d", "v9.9.9")
    git(repository, "tag", "v0.1.0")
    commit_all(repository, "a commit after the tag")
    later = git(repository, "rev-parse", "HEAD").strip()
    result = invoke(repository, "release", "--skip-gates", env={"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v0.1.0"}, check=False)
    assert result.returncode == 1
    assert error_line(result) == (
        f"error: tag 'v0.1.0' (GITHUB_REF_NAME) names commit {head[:12]}, but HEAD is {later[:12]}: "
        "a release is made of the commit its tag names; check out v0.1.0"
    )
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


def test_a_release_tagged_v_version_by_ci_and_on_head_is_written(released: Path, repository: Path) -> None:
    """A release candidate's tag on the same commit is no obstacle once v<version> is there too."""
    git(repository, "tag", "v0.1.0rc1")
    git(repository, "tag", "v0.1.0")
    invoke(repository, "release", "--skip-gates", "--tag", "v0.1.0", env={"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v0.1.0", "GITHUB_REF": "refs/tags/v0.1.0"})
    # The tag is checked, not recorded: the same commit makes the same archive, tagged or not.
    assert (repository / ARCHIVE).read_bytes() == (released / ARCHIVE).read_bytes()


@pytest.mark.parametrize("link", ["/", "../outside", "{outside}"], ids=["root", "relative", "absolute"])
def test_dist_as_a_symlink_out_of_the_repository_is_refused_and_nothing_is_written_there(repository: Path, tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    link = link.format(outside=outside)
    (repository / "dist").symlink_to(link)
    before = wheelhouse_state(repository)
    written = Path(link if link.startswith("/") else repository / link).resolve() / "wheelhouse-0.1.0.tar.gz"
    was_there = written.exists()
    try:
        result = invoke(repository, "release", "--skip-gates", check=False)
    finally:
        if written.exists() and not was_there:  # what a regression would leave in `/`: not kept
            written.unlink()
            pytest.fail(f"the release wrote {written}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == f"error: dist: a symlink to {link!r}, outside the repository; a release writes only inside it: remove the link"
    assert list(outside.iterdir()) == []
    assert wheelhouse_state(repository) == before


def test_dist_as_a_symlink_inside_the_repository_is_written_through_and_a_dangling_one_is_named(released: Path, repository: Path) -> None:
    (repository / "dist").symlink_to("build/releases")
    result = invoke(repository, "release", "--skip-gates", check=False)
    assert result.returncode == 1
    assert error_line(result) == "error: dist: a symlink to 'build/releases', which does not exist; create that directory or remove the link"
    (repository / "build/releases").mkdir(parents=True)
    invoke(repository, "release", "--skip-gates")
    assert (repository / "build/releases/wheelhouse-0.1.0.tar.gz").read_bytes() == (released / ARCHIVE).read_bytes()


@pytest.fixture
def with_dist(released: Path, tmp_path: Path) -> Path:
    """A copy of the released repository, its dist/wheelhouse-0.1.0.tar.gz included."""
    return Path(shutil.copytree(released, tmp_path / "monorepo", symlinks=True))


def test_releasing_the_version_again_from_another_commit_is_refused_naming_both_commits(with_dist: Path) -> None:
    archive = with_dist / ARCHIVE
    before, state = archive.read_bytes(), wheelhouse_state(with_dist)
    released_from = git(with_dist, "rev-parse", "HEAD").strip()
    orders = with_dist / ORDER_MODULE / "orders.py"
    orders.write_text(orders.read_text() + '\nRELEASED_AGAIN = "as 0.1.0"\n')
    commit_all(with_dist, "another 0.1.0")
    now = git(with_dist, "rev-parse", "HEAD").strip()
    result = invoke(with_dist, "release", "--skip-gates", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == (
        f"error: dist/wheelhouse-0.1.0.tar.gz: release 0.1.0 was already made of commit {released_from}; "
        f"this is commit {now}: a version is released once; raise [tool.wheelpipe.release] version"
    )
    assert archive.read_bytes() == before
    assert wheelhouse_state(with_dist) == state  # refused before anything was built
    assert sorted(p.name for p in (with_dist / "dist").iterdir()) == ["wheelhouse-0.1.0.tar.gz"]


def test_releasing_the_same_commit_again_leaves_the_identical_archive_as_it_is(with_dist: Path) -> None:
    archive = with_dist / ARCHIVE
    before, stamp = archive.read_bytes(), archive.stat().st_mtime_ns
    result = invoke(with_dist, "release", "--skip-gates")
    assert "dist/wheelhouse-0.1.0.tar.gz: already released from this commit, byte for byte: left as it is" in result.stderr
    assert archive.read_bytes() == before and archive.stat().st_mtime_ns == stamp


def test_an_archive_of_this_commit_with_other_bytes_is_refused_and_kept(with_dist: Path) -> None:
    """The archive's own record says this commit, but its bytes are not what the commit makes
    (recompressed here; a swapped wheel would do the same): it is not this release."""
    archive = with_dist / ARCHIVE
    swapped = gzip.compress(gzip.decompress(archive.read_bytes()), compresslevel=1, mtime=0)
    archive.write_bytes(swapped)
    commit = git(with_dist, "rev-parse", "HEAD").strip()
    result = invoke(with_dist, "release", "--skip-gates", check=False)
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(f"error: dist/wheelhouse-0.1.0.tar.gz: holds release 0.1.0 of commit {commit} with sha256 {hashlib.sha256(swapped).hexdigest()}, but that commit makes sha256 "), line
    assert line.endswith(": a version is released once; find out what changed the archive (or the wheelhouse) before shipping either")
    assert archive.read_bytes() == swapped


@pytest.mark.parametrize("what", ["notes", "symlink"])
def test_something_else_under_the_archive_name_is_refused_naming_it(with_dist: Path, tmp_path: Path, what: str) -> None:
    archive = with_dist / ARCHIVE
    archive.unlink()
    if what == "notes":
        archive.write_text("not an archive\n")
        expected = "error: dist/wheelhouse-0.1.0.tar.gz: already there, and not a release archive this pipeline can read (ReadError); a version is released once: move it away only if it was never shipped, else raise [tool.wheelpipe.release] version"
    else:
        (tmp_path / "elsewhere.tar.gz").write_bytes((with_dist / "wheelhouse" / "manifest.json").read_bytes())
        archive.symlink_to(tmp_path / "elsewhere.tar.gz")
        expected = "error: dist/wheelhouse-0.1.0.tar.gz: already there and not a file (a symlink or a directory); a release archive is a file: move it away"
    result = invoke(with_dist, "release", "--skip-gates", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == expected


def test_a_dirty_archive_is_a_draft_each_allow_dirty_run_replaces(repository: Path) -> None:
    orders = repository / ORDER_MODULE / "orders.py"
    original = orders.read_text()
    for draft in ("first", "second"):
        orders.write_text(original + f'\nDRAFT = "{draft}"\n')
        invoke(repository, "release", "--skip-gates", "--allow-dirty")
        shipped = order_wheel(wheel_files(repository / DIRTY_ARCHIVE))["order_manager/orders.py"].decode()
        assert f'DRAFT = "{draft}"' in shipped
