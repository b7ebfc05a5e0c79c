"""Fault suite, locks and downloads: a lock is checked, not trusted, and a file whose bytes
do not hash to a locked value never enters the wheelhouse.

Each case edits a real lock (or serves a real index) the way a careless or hostile person
would and asserts the exit code, the one `error:` line, and that nothing was written or
lost: the wheelhouse still verifies with `sha256sum -c SHA256SUMS` and still points at the
same generation, and requirements/ holds exactly what the test put there.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import ROOT, commit_all, copy_repository, error_lines, free_port, git, invoke, serving

from wheelpipe.index import Indexes, IndexFile
from wheelpipe.lockfile import parse_pins

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

BOGUS = "a" * 64


@pytest.fixture
def house(built_copy: Path) -> Path:
    return built_copy


def generation(repository: Path) -> str:
    return (repository / "wheelhouse").readlink().as_posix()


def assert_wheelhouse_intact(repository: Path, before: str) -> None:
    assert generation(repository) == before, "the wheelhouse symlink moved"
    checked = subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=repository / "wheelhouse", capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def requirement_bytes(repository: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((repository / "requirements").iterdir())}


def pin_block(text: str, name: str) -> tuple[int, int]:
    """Start and end offsets of a pin's block (its line, hashes and `# via` notes)."""
    match = re.search(rf"^{re.escape(name)}==.*?(?=^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, name
    return match.start(), match.end()


def edit_hashes(text: str, name: str, edit: str) -> tuple[str, str]:
    """The lock text with one hash of `name` added, changed or removed; and that hash."""
    start, end = pin_block(text, name)
    block = text[start:end]
    hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
    if edit == "added":
        block = block.replace(f"--hash=sha256:{hashes[0]}", f"--hash=sha256:{BOGUS} \\\n    --hash=sha256:{hashes[0]}", 1)
        return text[:start] + block + text[end:], BOGUS
    if edit == "changed":
        return text[:start] + block.replace(hashes[0], BOGUS) + text[end:], hashes[0]
    # removed: the last hash line, keeping the continuation of the one before it right
    lines = block.splitlines(keepends=True)
    index = max(i for i, line in enumerate(lines) if hashes[-1] in line)
    lines[index - 1] = lines[index - 1].replace(" \\\n", "\n")
    del lines[index]
    return text[:start] + "".join(lines) + text[end:], hashes[-1]


# --- 1. locks are checked, not trusted ----------------------------------------------------


@pytest.mark.parametrize("edit", ["added", "changed", "removed"])
def test_an_edited_hash_is_named_by_lock_check_and_undone_by_lock(house: Path, edit: str) -> None:
    lock = house / "requirements/order.txt"
    original = lock.read_text()
    flask = parse_pins(lock)["flask"].version
    edited, digest = edit_hashes(original, "flask", edit)
    lock.write_text(edited)

    result = invoke(house, "lock", "--check", check=False)
    assert result.returncode == 1
    (first,) = error_lines(result)
    assert first == "error: requirements/order.txt does not match its inputs (run `invoke lock`):"
    if edit == "removed":
        expected = [f"  requirements/order.txt: flask=={flask}: hash sha256:{digest} is published but missing from the lock"]
    elif edit == "added":
        expected = [f"  requirements/order.txt: flask=={flask}: hash sha256:{BOGUS} is not published for this version"]
    else:
        expected = [
            f"  requirements/order.txt: flask=={flask}: hash sha256:{BOGUS} is not published for this version",
            f"  requirements/order.txt: flask=={flask}: hash sha256:{digest} is published but missing from the lock",
        ]
    assert result.stderr.strip().splitlines()[-len(expected):] == expected
    assert lock.read_text() == edited, "--check must not write"

    # `invoke lock` takes every hash from the index, never from the lock it replaces.
    invoke(house, "lock")
    assert lock.read_text() == original
    git(house, "diff", "--exit-code", "requirements/")


def test_a_lock_with_crlf_line_ends_is_named_as_such_by_lock_check_and_rewritten_by_lock(house: Path) -> None:
    # Pins and lines are the same: the diff used to be empty after "does not match its inputs:".
    lock = house / "requirements/order.txt"
    original = lock.read_bytes()
    lock.write_bytes(original.replace(b"\n", b"\r\n"))
    edited = requirement_bytes(house)

    result = invoke(house, "lock", "--check", check=False)
    assert result.returncode == 1
    assert error_lines(result) == [
        "error: requirements/order.txt: CRLF line ends, where `invoke lock` writes LF (the content matches its inputs); "
        "run `invoke lock`, and keep git from converting them (`requirements/** text eol=lf` in .gitattributes)"
    ]
    assert requirement_bytes(house) == edited, "--check must not write"

    result = invoke(house, "lock")
    assert "wrote requirements/order.txt with LF line ends (it had CRLF)" in result.stderr
    assert lock.read_bytes() == original
    git(house, "diff", "--exit-code", "requirements/")


@pytest.mark.parametrize(
    ("marker", "why"),
    [
        ('sys_platform == "win32"', "which is false on the target CPython 3.11 on manylinux_2_36_x86_64"),
        ('platform_release >= "6"', "and the target CPython 3.11 on manylinux_2_36_x86_64 does not declare platform_release"),
    ],
    ids=["false-on-the-target", "undecidable"],
)
def test_a_pin_with_a_marker_that_does_not_hold_on_the_target_stops_build_wheels(house: Path, marker: str, why: str) -> None:
    # build-wheels once read the pin and ignored its marker: only lock --check saw the edit.
    before = generation(house)
    lock = house / "requirements/order.txt"
    text = lock.read_text()
    flask = parse_pins(lock)["flask"]
    lock.write_text(text.replace(f"flask=={flask.version} \\\n", f"flask=={flask.version} ; {marker} \\\n", 1))
    assert parse_pins(lock)["flask"].marker == marker
    edited = requirement_bytes(house)

    result = invoke(house, "build-wheels", check=False)
    assert result.returncode == 1
    assert error_lines(result) == [
        f"error: requirements/order.txt:{flask.line}: flask=={flask.version} is pinned only where `{marker}`, {why}; "
        "a lock for the target carries no markers: run `invoke lock`"
    ]
    assert_wheelhouse_intact(house, before)
    assert requirement_bytes(house) == edited


def test_a_pin_with_a_marker_that_holds_on_the_target_is_built_as_a_resolver_wrote_it(house: Path) -> None:
    # pip-compile writes the marker a requirement was declared with when it holds on the target.
    lock = house / "requirements/order.txt"
    flask = parse_pins(lock)["flask"]
    lock.write_text(lock.read_text().replace(f"flask=={flask.version} \\\n", f'flask=={flask.version} ; sys_platform == "linux" \\\n', 1))
    result = invoke(house, "build-wheels")
    assert "nothing to build" in result.stderr
    assert f"flask=={flask.version}" in (house / "wheelhouse/install/order.txt").read_text()


ORPHANED_USER = "generated by `invoke lock` for service 'user', which the repository no longer has"


def test_the_locks_of_a_deleted_service_are_named_by_lock_check_and_removed_by_lock(house: Path) -> None:
    # They used to stay, named by nothing, seeding every later resolution.
    orphans = {name: (house / "requirements" / name).read_bytes() for name in ("user.in", "user.txt")}
    (house / "requirements/docs.in").write_text("# the team's own, not generated: never touched\nsphinx\n")
    git(house, "rm", "-rq", "services/user")
    git(house, "commit", "-qm", "the user service is gone")

    result = invoke(house, "lock")
    assert f"removed requirements/user.in ({ORPHANED_USER})" in result.stderr
    assert f"removed requirements/user.txt ({ORPHANED_USER})" in result.stderr
    assert not (house / "requirements/user.in").exists() and not (house / "requirements/user.txt").exists()
    assert (house / "requirements/docs.in").read_text().startswith("# the team's own")
    invoke(house, "lock", "--check")

    # Brought back (a merge, a careless checkout): the only difference, said in one line.
    for name, data in orphans.items():
        (house / "requirements" / name).write_bytes(data)
    before = requirement_bytes(house)
    result = invoke(house, "lock", "--check", check=False)
    assert result.returncode == 1
    assert error_lines(result) == [f"error: requirements/user.in, requirements/user.txt: {ORPHANED_USER}; run `invoke lock` to remove them"]
    assert requirement_bytes(house) == before, "--check must not write"


def test_a_renamed_service_of_a_monorepo_not_ours_leaves_no_lock_under_its_old_name(tmp_path: Path) -> None:
    monorepo = copy_repository(tmp_path / "foreign", ROOT / "tests" / "packages" / "foreign_monorepo")
    invoke(monorepo, "lock")
    commit_all(monorepo, "locked")
    git(monorepo, "mv", "apps/api", "apps/gateway")
    commit_all(monorepo, "the api app is the gateway now")

    stale = invoke(monorepo, "lock", "--check", check=False)
    assert stale.returncode == 1
    orphaned = "generated by `invoke lock` for service 'api', which the repository no longer has"
    assert f"  - requirements/api.txt ({orphaned})" in stale.stderr.splitlines()
    assert f"  - requirements/api.in ({orphaned})" in stale.stderr.splitlines()

    invoke(monorepo, "lock")
    assert sorted(p.name for p in (monorepo / "requirements").glob("*.*")) == ["build.in", "build.txt", "dev.in", "dev.txt", "gateway.in", "gateway.txt"]
    invoke(monorepo, "lock", "--check")


def test_a_deleted_pin_block_stops_build_wheels_naming_the_package_and_who_requires_it(house: Path) -> None:
    before = generation(house)
    lock = house / "requirements/order.txt"
    text = lock.read_text()
    start, end = pin_block(text, "markupsafe")
    lock.write_text(text[:start] + text[end:])
    edited = requirement_bytes(house)

    result = invoke(house, "build-wheels", check=False)
    assert result.returncode == 1
    werkzeug = parse_pins(lock)["werkzeug"].version
    assert error_lines(result) == [
        f"error: requirements/order.txt: markupsafe is not pinned, but werkzeug=={werkzeug} requires markupsafe>=2.1.1 on CPython 3.11 on manylinux_2_36_x86_64; run `invoke lock`"
    ]
    assert_wheelhouse_intact(house, before)
    assert requirement_bytes(house) == edited

    stale = invoke(house, "lock", "--check", check=False)
    assert stale.returncode == 1 and re.search(r"^\s+\+ markupsafe==", stale.stderr, re.MULTILINE), stale.stderr


def test_a_pin_moved_outside_what_a_requirer_allows_stops_build_wheels(house: Path) -> None:
    """Replace the werkzeug pin with a release flask does not accept, hashes and all."""
    before = generation(house)
    old = [f for f in Indexes().files("werkzeug") if str(f.version) == "2.3.8" and f.sha256]
    assert old, "PyPI lists werkzeug 2.3.8"
    lock = house / "requirements/order.txt"
    text = lock.read_text()
    start, end = pin_block(text, "werkzeug")
    hashes = " \\\n".join(f"    --hash=sha256:{f.sha256}" for f in old)
    lock.write_text(text[:start] + f"werkzeug==2.3.8 \\\n{hashes}\n    # via flask\n" + text[end:])

    result = invoke(house, "build-wheels", "--service", "order", check=False)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line.startswith("error: requirements/order.txt: pins werkzeug==2.3.8, but flask==")
    assert "requires werkzeug>=" in line
    assert_wheelhouse_intact(house, before)


def test_a_first_party_requirement_the_built_version_does_not_meet_stops_build_wheels(house: Path) -> None:
    """What `pip check` in the image used to find: proven from the built wheels before any
    install manifest is written, so the image build need not run it."""
    before = generation(house)
    pyproject = house / "services/order/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"discount-calculator",', '"discount-calculator>=9",', 1))

    result = invoke(house, "build-wheels", "--service", "order", check=False)
    assert result.returncode == 1
    assert error_lines(result) == [
        "error: order: order-manager==0.1.0 requires discount-calculator>=9, but the first-party discount-calculator is 0.1.0; change one of the two"
    ]
    assert_wheelhouse_intact(house, before)


def test_an_unknown_upgrade_package_is_an_error_and_writes_nothing(house: Path) -> None:
    before = requirement_bytes(house)
    result = invoke(house, "lock", "--upgrade-package", "flaks", check=False)
    assert result.returncode == 1
    assert error_lines(result) == ["error: --upgrade-package 'flaks': no lock pins flaks and no service requires it"]
    assert requirement_bytes(house) == before


# --- 2. a hash mismatch is a hash mismatch -----------------------------------------------


def test_a_lock_whose_hashes_no_published_wheel_has_stops_without_building_an_sdist(house: Path) -> None:
    before = generation(house)
    for name in ("order", "user", "dev"):
        lock = house / f"requirements/{name}.txt"
        text = lock.read_text()
        start, end = pin_block(text, "markupsafe")
        version = parse_pins(lock)["markupsafe"].version
        lock.write_text(text[:start] + f"markupsafe=={version} \\\n    --hash=sha256:{BOGUS}\n" + text[end:])

    result = invoke(house, "build-wheels", "--clean", check=False)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert re.fullmatch(
        rf"error: requirements/order.txt, requirements/user.txt: markupsafe==\S+: the index's markupsafe-\S+-cp311-cp311-\S*manylinux\S*_x86_64\.whl has sha256:[0-9a-f]{{64}}, which is not locked \(locked: sha256:{BOGUS}\); run `invoke lock --check`",
        line,
    ), line
    assert "sdist" not in result.stderr
    assert_wheelhouse_intact(house, before)


@pytest.fixture
def hostile_index(tmp_path: Path) -> Iterator[tuple[str, IndexFile]]:
    """An index that lists the genuine markupsafe wheel's name and locked hash, but serves other bytes."""
    genuine = next(
        f for f in Indexes().files("markupsafe")
        if str(f.version) == "3.0.4" and f.is_wheel and "cp311-cp311-manylinux" in f.filename and f.filename.endswith("_x86_64.whl")
    )
    root = tmp_path / "hostile"
    (root / "simple/markupsafe").mkdir(parents=True)
    (root / "files").mkdir()
    (root / "files" / genuine.filename).write_bytes(b"PK\x03\x04 not the wheel the lock names")
    (root / "simple/markupsafe/index.html").write_text(
        f'<html><body><a href="../../files/{genuine.filename}#sha256={genuine.sha256}">{genuine.filename}</a></body></html>\n'
    )
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)]
    with serving(argv, tmp_path / "hostile.log", f"http://127.0.0.1:{port}/simple/markupsafe/", "hostile index"):
        yield f"http://127.0.0.1:{port}/simple/", genuine


def test_a_downloaded_file_whose_bytes_are_not_locked_stops_the_run_naming_file_and_hashes(house: Path, hostile_index: tuple[str, IndexFile]) -> None:
    url, genuine = hostile_index
    before = generation(house)
    root = house / "pyproject.toml"
    root.write_text(root.read_text() + f'\n[tool.wheelpipe.index]\nurl = "{url}"\nextra-urls = ["https://pypi.org/simple/"]\n')
    locked = parse_pins(house / "requirements/order.txt")["markupsafe"]
    assert genuine.sha256 in locked.hashes

    result = invoke(house, "build-wheels", "--clean", check=False, env={"XDG_CACHE_HOME": str(house.parent / "empty-cache")})
    assert result.returncode == 1
    (line,) = error_lines(result)
    found = re.search(r"has sha256:([0-9a-f]{64})", line)
    assert found and found[1] not in locked.hashes
    expected = ", ".join(f"sha256:{h}" for h in sorted(locked.hashes))
    assert line == (
        f"error: requirements/order.txt, requirements/user.txt: markupsafe==3.0.4: downloaded {genuine.filename} has sha256:{found[1]}, "
        f"which is not locked (locked: {expected})"
    )
    assert "sdist" not in result.stderr
    assert_wheelhouse_intact(house, before)
    assert not list((house / ".wheelhouse").glob("partial-*"))


def test_an_unreachable_index_is_named(house: Path) -> None:
    before = generation(house)
    root = house / "pyproject.toml"
    root.write_text(root.read_text() + '\n[tool.wheelpipe.index]\nurl = "http://127.0.0.1:9/simple/"\n')
    result = invoke(house, "build-wheels", "--clean", check=False)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line.startswith("error: http://127.0.0.1:9/simple/")
    assert "cannot reach the index" in line and "Connection refused" in line
    assert_wheelhouse_intact(house, before)

    locks = requirement_bytes(house)
    result = invoke(house, "lock", "--check", check=False)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line.startswith("error: requirements/") and ": cannot resolve requirements/" in line
    assert "http://127.0.0.1:9/simple/" in line and "Connection refused" in line
    assert requirement_bytes(house) == locks


# --- 6. a clean environment for every tool ---------------------------------------------


def test_installer_configuration_in_the_environment_reaches_no_lock_and_no_build(house: Path) -> None:
    """A machine's pip/uv settings (here: dead indexes, a bogus constraint) change nothing."""
    constraint = house.parent / "constraint.txt"
    constraint.write_text("flask==0.1\n")
    hostile = {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "http://127.0.0.1:9/extra",
        "PIP_FIND_LINKS": str(house.parent),
        "PIP_CONSTRAINT": str(constraint),
        "UV_INDEX_URL": "http://127.0.0.1:9/simple",
        "UV_DEFAULT_INDEX": "http://127.0.0.1:9/simple",
        "UV_CONSTRAINT": str(constraint),
        "PIP_TOOLS_RESOLVER": "legacy",
    }
    sums = (house / "wheelhouse/SHA256SUMS").read_text()
    locks = requirement_bytes(house)

    # pip-tools under the same settings: tests/test_locks.py (it agrees with uv there).
    invoke(house, "lock", "--check", env=hostile)
    invoke(house, "lock", env=hostile)
    assert requirement_bytes(house) == locks
    invoke(house, "build-wheels", "--clean", env={**hostile, "XDG_CACHE_HOME": str(house.parent / "empty-cache")})
    assert (house / "wheelhouse/SHA256SUMS").read_text() == sums
