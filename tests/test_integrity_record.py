"""The wheelhouse's own record is never what a wheel is checked against.

Each attack is made exactly so, on a copy of one built monorepo: a wheel's bytes swapped (its
RECORD fixed, so it is a valid wheel) and only its sha256 edited in manifest.json; the same made
consistent (install manifests and SHA256SUMS written from the edited manifest.json, as someone
with wheelpipe's own code would); a third-party wheel's origin rewritten as built from its sdist.
build-wheels, verify-wheelhouse and a gated release each stop with one line, exit 1, and write
nothing: no new generation, no dist/ archive.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from monorepo import failure, git, invoke, wheelhouse_state

from wheelpipe.wheelhouse.manifest import _installed, _read_manifest, _render_files
from wheelpipe.wheelhouse.verify import _users

# Wheelhouses fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

FLASK = "flask-3.1.3-py3-none-any.whl"
ORDER_MANAGER = "order_manager-0.1.0-py3-none-any.whl"
REBUILD = "rebuild with `invoke build-wheels --clean`"
PAYLOAD = b"\nimport os as _os  # planted\n_os.environ.setdefault('PLANTED', '1')\n"


@pytest.fixture
def repo(built_copy: Path) -> Path:
    return built_copy


def house(repository: Path) -> Path:
    return repository / "wheelhouse"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def swap_wheel(wheel: Path, member: str) -> str:
    """The wheel with PAYLOAD appended to `member` and its RECORD line fixed (a valid wheel, as
    pip checks one), written as a new file (never through a hard link another generation
    shares); its sha256."""
    with zipfile.ZipFile(wheel) as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    assert member in contents, sorted(contents)
    contents[member] += PAYLOAD
    record = next(name for name in contents if name.endswith(".dist-info/RECORD"))
    rows = []
    for row in csv.reader(io.StringIO(contents[record].decode())):
        if row and row[0] == member:
            row = [member, _record_hash(contents[member]), str(len(contents[member]))]
        rows.append(row)
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    contents[record] = text.getvalue().encode()
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    wheel.unlink()
    wheel.write_bytes(forged.getvalue())
    with zipfile.ZipFile(wheel) as archive:  # what pip checks on install: every file as RECORD says
        for row in csv.reader(io.StringIO(archive.read(record).decode())):
            if row and row[1]:
                assert _record_hash(archive.read(row[0])) == row[1], row[0]
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def manifest(repository: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((house(repository) / "manifest.json").read_text())
    return document


def write_manifest(repository: Path, document: dict[str, Any]) -> None:
    path = house(repository) / "manifest.json"
    path.unlink()
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def edit_entry(repository: Path, file: str, **changes: object) -> None:
    document = manifest(repository)
    next(w for w in document["wheels"] if w["file"] == file).update(changes)
    write_manifest(repository, document)


def make_consistent(repository: Path) -> None:
    """Install manifests and SHA256SUMS written from the edited manifest.json with wheelpipe's
    own code: every derived file agrees, so only the locks or a rebuild can tell."""
    directory = house(repository).resolve()
    targets, entries = _read_manifest(directory / "manifest.json")
    listed = list(entries.values())
    for name, text in _render_files(targets, listed, _installed(targets, listed, _users(listed))).items():
        (directory / name).unlink()
        (directory / name).write_text(text)
    checked = subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=directory, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout


def locked_hashes(repository: Path, name: str) -> tuple[list[str], list[str]]:
    """The service locks that pin `name`, and the hashes they lock for it."""
    locks, hashes = [], set()
    for lock in sorted((repository / "requirements").glob("*.txt")):
        if lock.name in ("dev.txt", "build.txt"):
            continue
        found = re.search(rf"^{name}==\S+((?: \\\n    --hash=sha256:[0-9a-f]{{64}})+)", lock.read_text(), flags=re.M)
        if found:
            locks.append(f"requirements/{lock.name}")
            hashes |= set(re.findall(r"[0-9a-f]{64}", found.group(1)))
    return locks, sorted(hashes)


# The attacks, each made on a built copy; each returns what the one line must say.


def swapped_flask_with_its_sha256_edited(repository: Path) -> str:
    recorded = hashlib.sha256((house(repository) / "manifest.json").read_bytes()).hexdigest()
    edit_entry(repository, FLASK, sha256=swap_wheel(house(repository) / FLASK, "flask/__init__.py"))
    edited = hashlib.sha256((house(repository) / "manifest.json").read_bytes()).hexdigest()
    return f"error: wheelhouse/manifest.json: edited after build-wheels wrote it: its sha256 is {edited}, wheelhouse/SHA256SUMS records {recorded}; {REBUILD}"


def swapped_flask_made_consistent(repository: Path) -> str:
    forged = swap_wheel(house(repository) / FLASK, "flask/__init__.py")
    edit_entry(repository, FLASK, sha256=forged)
    make_consistent(repository)
    locks, hashes = locked_hashes(repository, "flask")
    return (
        f"error: wheelhouse/{FLASK}: sha256 {forged} is none of the hashes {', '.join(locks)} lock for flask==3.1.3 "
        f"({', '.join(f'sha256:{h}' for h in hashes)}): not the wheel the lock pins; {REBUILD}"
    )


def flask_recorded_as_built_from_its_sdist(repository: Path) -> str:
    genuine = next(w["sha256"] for w in manifest(repository)["wheels"] if w["file"] == FLASK)
    _, hashes = locked_hashes(repository, "flask")
    (sdist_hash,) = [h for h in hashes if h != genuine]  # the lock's other hash: the sdist's
    forged = swap_wheel(house(repository) / FLASK, "flask/__init__.py")
    origin = {
        "kind": "built-from-sdist", "sdist": "flask-3.1.3.tar.gz", "locked_hash": f"sha256:{sdist_hash}",
        "build_lock": "requirements/sdists/flask-3.1.3.txt", "build_environment": "sha256:" + "0" * 64, "source_date_epoch": 1700000000,
        "locks": ["requirements/order.txt", "requirements/user.txt"],
    }
    edit_entry(repository, FLASK, sha256=forged, origin=origin)
    make_consistent(repository)
    locks, _ = locked_hashes(repository, "flask")
    return (
        f"error: wheelhouse/manifest.json: {FLASK} is recorded as built from the sdist flask-3.1.3.tar.gz (sha256:{sdist_hash}), but "
        f"{', '.join(locks)} lock flask==3.1.3 as a wheel to download (it has no build lock requirements/sdists/flask-3.1.3.txt); {REBUILD}"
    )


def swapped_first_party_made_consistent(repository: Path) -> str:
    genuine = next(w["sha256"] for w in manifest(repository)["wheels"] if w["file"] == ORDER_MANAGER)
    forged = swap_wheel(house(repository) / ORDER_MANAGER, "order_manager/__init__.py")
    edit_entry(repository, ORDER_MANAGER, sha256=forged)
    make_consistent(repository)
    return (
        f"error: wheelhouse/{ORDER_MANAGER}: sha256 {forged}, but building services/order (order-manager) from {{source}}, as "
        f"wheelhouse/manifest.json records it was built, gives {ORDER_MANAGER} with sha256 {genuine}: the wheel is not what its sources build; {REBUILD}"
    )


ATTACKS = {
    "flask-swapped-sha256-edited": swapped_flask_with_its_sha256_edited,
    "flask-swapped-consistent": swapped_flask_made_consistent,
    "flask-origin-rewritten-as-sdist": flask_recorded_as_built_from_its_sdist,
    "first-party-swapped-consistent": swapped_first_party_made_consistent,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_build_wheels_stops_at_a_poisoned_wheelhouse_naming_the_edit(repo: Path, attack: str) -> None:
    expected = ATTACKS[attack](repo).format(source="the working tree")
    before = wheelhouse_state(repo)
    assert failure(repo, "build-wheels") == expected
    assert wheelhouse_state(repo) == before
    # A wheelhouse built anew from the locks and the sources holds no planted byte.
    invoke(repo, "build-wheels", "--clean")
    assert not [w for w in house(repo).glob("*.whl") if PAYLOAD in b"".join(zipfile.ZipFile(w).read(n) for n in zipfile.ZipFile(w).namelist())]
    invoke(repo, "verify-wheelhouse")


@pytest.mark.parametrize("attack", ["flask-swapped-sha256-edited", "flask-swapped-consistent", "flask-origin-rewritten-as-sdist"])
def test_verify_wheelhouse_names_a_poisoned_third_party_wheel(repo: Path, attack: str) -> None:
    expected = ATTACKS[attack](repo)
    before = wheelhouse_state(repo)
    assert failure(repo, "verify-wheelhouse") == expected
    assert wheelhouse_state(repo) == before


def test_a_manifest_edit_names_manifest_json_not_the_install_manifest(repo: Path) -> None:
    """Item 6: an edit that changes what manifest.json gives (who installs flask) is named
    where it was made, not in the install manifests that no longer agree with it."""
    document = manifest(repo)
    next(w for w in document["wheels"] if w["file"] == FLASK)["services"] = ["user"]
    write_manifest(repo, document)
    for task in ("verify-wheelhouse", "build-wheels"):
        line = failure(repo, task)
        assert line.startswith("error: wheelhouse/manifest.json: edited after build-wheels wrote it: its sha256 is "), line
        assert "install/order.txt" not in line and line.endswith(REBUILD)


def test_a_wheelhouse_this_clone_did_not_write_is_checked_against_a_rebuild_once(repo: Path) -> None:
    """A wheelhouse restored from elsewhere (here: its record in git's directory gone) has every
    first-party wheel built again and compared; then it is this clone's, and a no-op is a no-op."""
    record = repo / git(repo, "rev-parse", "--git-path", "wheelpipe-wheelhouse").strip()
    assert record.read_text().strip() == hashlib.sha256((house(repo) / "manifest.json").read_bytes()).hexdigest()
    trusted = invoke(repo, "build-wheels")
    assert "checking" not in trusted.stderr and "up to date" in trusted.stderr
    record.unlink()
    restored = invoke(repo, "build-wheels")
    assert "checking 5 wheel(s) the wheelhouse holds against a build of their recorded sources" in restored.stderr
    assert "checking services/order (order-manager) 0.1.0 from the working tree" in restored.stderr
    assert "up to date" in restored.stderr and record.is_file()
    again = invoke(repo, "build-wheels")
    assert "checking" not in again.stderr and "up to date" in again.stderr


def test_build_wheels_trusts_its_own_record_but_a_release_rebuilds_regardless(repo: Path) -> None:
    """Someone who can write git's directory too (the record made to match the forgery): the
    working tree build trusts it, as documented; the release builds from the commit and compares."""
    expected = swapped_first_party_made_consistent(repo)
    record = repo / git(repo, "rev-parse", "--git-path", "wheelpipe-wheelhouse").strip()
    record.write_text(hashlib.sha256((house(repo) / "manifest.json").read_bytes()).hexdigest() + "\n")
    assert "up to date" in invoke(repo, "build-wheels").stderr
    head = git(repo, "rev-parse", "HEAD").strip()
    assert failure(repo, "release", "--skip-gates") == expected.format(source=f"commit {head[:12]}")
    assert not (repo / "dist").exists()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_gated_release_of_a_poisoned_wheelhouse_ships_nothing(repo: Path, attack: str, docker_base_image: str) -> None:
    expected = ATTACKS[attack](repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    before = wheelhouse_state(repo)
    result = invoke(repo, "release", check=False, env={"INVOKE_IMAGE_BASE": docker_base_image})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "release gate: the locks match their inputs" in result.stderr  # the gates ran
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [expected.format(source=f"commit {head[:12]}")], result.stderr
    assert not (repo / "dist").exists() and wheelhouse_state(repo) == before
