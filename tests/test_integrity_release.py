"""What ships is what was committed: first-party wheels come from a clean staged copy of the
package's files (the commit for a release), symlinks and file names are checked, a dirty
release says so, and large files are streamed, never held in memory."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from monorepo import FIXTURE, ROOT, commit_all, copy_repository, git, invoke

from wheelpipe import firstparty, load_repository

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
                with zipfile.ZipFile(io.BytesIO(bundle.extractfile(member).read())) as wheel:
                    found[Path(member.name).name] = {name: wheel.read(name) for name in wheel.namelist()}
    return found


def released_manifest(archive: Path) -> dict:
    with tarfile.open(archive) as bundle:
        (member,) = [m for m in bundle.getmembers() if m.name.endswith("/manifest.json")]
        return json.loads(bundle.extractfile(member).read())


def order_wheel(files: dict[str, dict[str, bytes]]) -> dict[str, bytes]:
    return next(contents for name, contents in files.items() if name.startswith("order_manager-"))


def wheelhouse_state(repository: Path) -> tuple[str, list[str]]:
    """The wheelhouse symlink and every generation: equal before and after means nothing was written."""
    return os.readlink(repository / "wheelhouse"), sorted(p.name for p in (repository / ".wheelhouse").iterdir())


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_an_untracked_file_in_a_service_is_in_no_released_wheel(repository):
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


def test_an_ignored_file_is_in_no_wheel_from_the_commit_or_the_working_tree(repository):
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
def test_a_committed_symlink_to_outside_the_repository_is_refused_naming_it(repository, command, target):
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
def test_a_dangling_symlink_in_a_package_is_refused_naming_it(repository, command):
    (repository / ORDER_MODULE / "gone.txt").symlink_to("missing.txt")
    commit_all(repository, "a symlink to nothing")
    before = wheelhouse_state(repository)
    result = invoke(repository, *command, check=False)
    assert result.returncode == 1
    assert error_line(result) == f"error: {ORDER_MODULE}/gone.txt: dangling symlink: its target missing.txt does not exist"
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


def test_a_symlink_to_a_directory_of_the_repository_ships_the_files_git_sees_there(repository):
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
def test_a_symlink_to_a_directory_outside_the_repository_is_refused_naming_it(repository, command):
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
def test_a_symlink_to_a_directory_that_holds_it_is_a_loop_named_in_one_line(repository, command):
    (repository / ORDER_MODULE / "again").symlink_to("..")
    commit_all(repository, "a symlink to its own parent")
    before = wheelhouse_state(repository)
    result = invoke(repository, *command, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_line(result) == f"error: {ORDER_MODULE}/again: symlink loop: .. leads back to a directory that holds the link"
    assert not (repository / "dist").exists()
    assert wheelhouse_state(repository) == before


def test_a_symlink_inside_the_repository_ships_as_the_file_it_points_at(repository):
    (repository / ORDER_MODULE / "NOTICE.txt").symlink_to("../../../../README.md")
    commit_all(repository, "a symlink to the root README")
    invoke(repository, "release", "--skip-gates")
    wheel = order_wheel(wheel_files(repository / ARCHIVE))
    assert wheel["order_manager/NOTICE.txt"] == (repository / "README.md").read_bytes()
    # The working tree and the commit agree on what the link is: the wheel is reused.
    assert "nothing to build" in invoke(repository, "build-wheels").stderr


def test_a_symlink_to_an_ignored_file_is_refused_in_the_working_tree(repository):
    (repository / ".env").write_text("PASSWORD=hunter2\n")
    (repository / ".git/info/exclude").write_text(".env\n")
    (repository / ORDER_MODULE / "settings.env").symlink_to("../../../../.env")
    before = wheelhouse_state(repository)
    result = invoke(repository, "build-wheels", check=False)
    assert result.returncode == 1
    assert error_line(result) == f"error: {ORDER_MODULE}/settings.env: symlink to a file git ignores (../../../../.env)"
    assert wheelhouse_state(repository) == before


def test_allow_dirty_releases_the_modified_working_tree_and_marks_it(repository):
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


def test_allow_dirty_on_a_clean_tree_gives_the_clean_release(released, repository):
    invoke(repository, "release", "--skip-gates", "--allow-dirty")
    assert not (repository / DIRTY_ARCHIVE).exists()
    assert (repository / ARCHIVE).read_bytes() == (released / ARCHIVE).read_bytes()


def test_a_file_name_that_is_not_utf8_is_refused_naming_package_and_name(repository):
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


def test_dist_being_a_file_stops_the_release_before_anything_is_written(repository):
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


def test_a_damaged_install_manifest_in_the_wheelhouse_never_ships(repository, tmp_path):
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


def test_an_install_manifest_damaged_after_the_build_is_derived_again_not_copied(repository):
    """Between build-wheels and the archive nothing is read back from the wheelhouse's
    derived files: the install manifest and its SBOM are made from the locks and wheels."""
    from wheelpipe import release, wheelhouse

    repo = load_repository(repository)
    house = wheelhouse.open_wheelhouse(repository)
    commit = release.commit_of(repo, allow_dirty=False)
    _drop_pin(house.install_manifest("order"), "blinker")
    members = {m.name: m for m in release._members(repo, house, commit, commit.source(repository), release.manifests.released(commit.source(repository)), None)}
    assert "\nblinker==1.9.0 \\\n" in members["wheelhouse-0.1.0/install/order.txt"].data.decode()
    assert "pkg:pypi/blinker@" in members["wheelhouse-0.1.0/sbom/order.cdx.json"].data.decode()


def test_the_fingerprint_outside_git_covers_the_files_git_would_see(tmp_path):
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


def test_a_wheel_that_changes_while_the_archive_is_written_leaves_no_archive(tmp_path):
    from wheelpipe import release

    wheel = tmp_path / "wheelhouse" / "demo-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"the bytes the manifest recorded")
    recorded = release.Member("wheelhouse-0.1.0/demo-0.1.0-py3-none-any.whl", wheel.stat().st_size, "0" * 64, path=wheel)
    target = tmp_path / "dist" / "wheelhouse-0.1.0.tar.gz"
    with pytest.raises(release.ReleaseError) as raised:
        release.write_archive([recorded], 315532800, target)
    assert str(raised.value).startswith(f"wheelhouse/{wheel.name}: changed while the release was written (expected sha256 {'0' * 64}")
    assert list(target.parent.iterdir()) == []


_STREAMING_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from wheelpipe import firstparty, release
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


def test_large_files_are_fingerprinted_and_archived_in_bounded_memory(tmp_path):
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
        while member.isdir():
            member = bundle.next()
        assert (member.name, member.size) == ("large-0.1.0/data.bin", LARGE_FILE_MB << 20)
    assert not [p for p in (root / "dist").iterdir() if p.name.endswith(".tmp")]
