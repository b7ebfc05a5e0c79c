"""The wheelhouse is tied to its target and verified whole.

Every wheel's tags are checked against the target (changing it remakes what it does not run),
manifest.json's shape is checked, and every derived file (install manifests, SHA256SUMS) is
re-derived from manifest.json and the locks and compared byte for byte: verify-wheelhouse and
build-wheels name what differs and stop (a damaged file is never written anew from what it
describes); `--clean` builds it anew. `--service` never changes another service's install manifest.

Each test edits a copy of one built monorepo as a careless or hostile user would.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from monorepo import failure, invoke, wheelhouse_state

from wheelpipe.errors import WheelhouseError
from wheelpipe.wheelhouse import verify

# Locks and wheelhouses resolved or fetched from the package index: not under `invoke test --fast`.
pytestmark = pytest.mark.network

MARKUPSAFE_CP311 = "markupsafe-3.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl"
ORDER_MANAGER = "order_manager-0.1.0-py3-none-any.whl"
SERVICE_RUNTIME = "service_runtime-0.1.0-py3-none-any.whl"
CP312_TAG = "cp312-cp312-manylinux_2_17_x86_64"
TARGET_311 = "CPython 3.11 on manylinux_2_36_x86_64"
TARGET_312 = "CPython 3.12 on manylinux_2_36_x86_64"


@pytest.fixture
def repo(built_copy: Path) -> Path:
    return built_copy


def house(repository: Path) -> Path:
    return repository / "wheelhouse"


def checksums_verify(repository: Path) -> bool:
    checked = subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=house(repository), capture_output=True, text=True, check=False)
    return checked.returncode == 0


def rewrite_checksums(repository: Path) -> None:
    """SHA256SUMS made to agree with the edited files, as a careful tamperer would."""
    lines = []
    for line in (house(repository) / "SHA256SUMS").read_text().splitlines():
        name = line.split("  ", 1)[1]
        lines.append(f"{hashlib.sha256((house(repository) / name).read_bytes()).hexdigest()}  {name}\n")
    replace(house(repository) / "SHA256SUMS", "".join(lines))


def replace(path: Path, text: str) -> None:
    """A new file, not a write through a hard link another generation shares."""
    path.unlink()
    path.write_text(text)


def manifest(repository: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((house(repository) / "manifest.json").read_text())
    return document


def write_manifest(repository: Path, document: object) -> None:
    replace(house(repository) / "manifest.json", json.dumps(document, indent=2, sort_keys=True) + "\n")


def set_target(repository: Path, python_version: str) -> None:
    pyproject = repository / "pyproject.toml"
    text = pyproject.read_text()
    abi = "cp" + python_version.replace(".", "")
    text = re.sub(r'(?m)^python-version = ".*"$', f'python-version = "{python_version}"', text)
    text = re.sub(r'(?m)^abi = ".*"$', f'abi = "{abi}"', text)
    pyproject.write_text(text)


def wheels(repository: Path) -> set[str]:
    return {p.name for p in house(repository).glob("*.whl")}


def verifies(repository: Path) -> str:
    result = invoke(repository, "verify-wheelhouse")
    assert checksums_verify(repository)
    return result.stdout


# The target


def test_verify_prints_what_it_checked(repo: Path) -> None:
    output = verifies(repo)
    assert f"{len(manifest(repo)['wheels'])} wheels match their sha256 in manifest.json and run on the target {TARGET_311}" in output
    assert "install/order.txt, install/pricing-audit.txt, install/user.txt: exactly what requirements/order.txt, requirements/pricing-audit.txt, requirements/user.txt" in output
    assert "manifest.json, SHA256SUMS" in output and "no other file" in output


def test_changing_the_target_to_cp312_refetches_the_wheels_it_does_not_run_and_verifies(repo: Path) -> None:
    set_target(repo, "3.12")
    result = invoke(repo, "build-wheels")
    assert "built 0, downloaded 1" in result.stderr
    assert MARKUPSAFE_CP311 not in wheels(repo)
    assert any(name.startswith("markupsafe-3.0.4-cp312-cp312-") for name in wheels(repo)), wheels(repo)
    assert manifest(repo)["target"] == {"abi": "cp312", "implementation": "cp", "platform": "manylinux_2_36_x86_64", "python_version": "3.12"}
    assert TARGET_312 in verifies(repo)


def test_verify_names_the_wheel_a_changed_target_does_not_run(repo: Path) -> None:
    set_target(repo, "3.12")
    before = wheelhouse_state(repo)
    line = failure(repo, "verify-wheelhouse")
    assert line.startswith(f"error: wheelhouse/{MARKUPSAFE_CP311}: its tags cp311-cp311-manylinux2014_x86_64, ")
    assert f"do not run on the target {TARGET_312}; run `invoke build-wheels`" in line
    assert wheelhouse_state(repo) == before and checksums_verify(repo)


def test_build_wheels_for_one_service_refuses_a_target_change_another_services_wheels_do_not_run(repo: Path) -> None:
    set_target(repo, "3.12")
    before = wheelhouse_state(repo)
    line = failure(repo, "build-wheels", "--service", "order")
    assert line.startswith(f"error: wheelhouse/{MARKUPSAFE_CP311}: service user installs it, but its tags cp311-cp311-")
    assert f"do not run on the target {TARGET_312}; run `invoke build-wheels` without --service" in line
    assert wheelhouse_state(repo) == before and checksums_verify(repo)


def test_a_first_party_wheel_tagged_for_another_interpreter_is_named_by_verify_and_rebuilt(repo: Path) -> None:
    impostor = f"order_manager-0.1.0-{CP312_TAG}.whl"
    # A consistent forgery: file, manifest.json and SHA256SUMS agree, so only the tags tell.
    (house(repo) / ORDER_MANAGER).rename(house(repo) / impostor)
    document = manifest(repo)
    for wheel in document["wheels"]:
        if wheel["file"] == ORDER_MANAGER:
            wheel["file"] = impostor
    document["wheels"].sort(key=lambda w: w["file"])
    write_manifest(repo, document)
    replace(house(repo) / "SHA256SUMS", (house(repo) / "SHA256SUMS").read_text().replace(ORDER_MANAGER, impostor))
    rewrite_checksums(repo)
    assert checksums_verify(repo)
    before = wheelhouse_state(repo)
    line = failure(repo, "verify-wheelhouse")
    assert line == f"error: wheelhouse/{impostor}: its tags {CP312_TAG} do not run on the target {TARGET_311}; run `invoke build-wheels`"
    # The check without the repository (publish, verify-image) holds it to the recorded target.
    with pytest.raises(WheelhouseError, match=re.escape(f"{impostor}: its tags {CP312_TAG} do not run on the target manifest.json records, {TARGET_311}")):
        verify(house(repo).resolve())
    assert wheelhouse_state(repo) == before

    result = invoke(repo, "build-wheels")
    assert "building services/order" in result.stderr and "built 1, downloaded 0" in result.stderr
    assert impostor not in wheels(repo) and ORDER_MANAGER in wheels(repo)
    verifies(repo)


def test_a_first_party_build_for_another_interpreter_is_refused_naming_wheel_tags_and_target(repo: Path) -> None:
    package = repo / "shared/discount_calculator"
    (package / "hatch_build.py").write_text(
        "from hatchling.builders.hooks.plugin.interface import BuildHookInterface\n\n\n"
        "class WrongInterpreter(BuildHookInterface):\n"
        "    def initialize(self, version, build_data):\n"
        f"        build_data['tag'] = '{CP312_TAG}'\n"
    )
    pyproject = package / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n[tool.hatch.build.targets.wheel.hooks.custom]\n")
    before = wheelhouse_state(repo)
    line = failure(repo, "build-wheels")
    assert line == (
        f"error: shared/discount_calculator (discount-calculator): the build produced discount_calculator-0.1.0-{CP312_TAG}.whl, "
        f"whose tags {CP312_TAG} do not run on the target {TARGET_311} (pyproject.toml [tool.wheelpipe.target])"
    )
    assert wheelhouse_state(repo) == before and checksums_verify(repo)


# Install manifests: re-derived from the locks


def test_a_pin_deleted_from_an_install_manifest_stops_verify_and_build_wheels_and_clean_restores_it(repo: Path) -> None:
    order = house(repo) / "install/order.txt"
    original = order.read_text()
    damaged = re.sub(r"markupsafe==3\.0\.4 \\\n    --hash=sha256:[0-9a-f]{64}\n", "", original)
    assert damaged != original
    replace(order, damaged)
    rewrite_checksums(repo)
    before = wheelhouse_state(repo)
    digest = next(w["sha256"] for w in manifest(repo)["wheels"] if w["file"] == MARKUPSAFE_CP311)
    for task in ("verify-wheelhouse", "build-wheels"):
        assert failure(repo, task) == (
            "error: wheelhouse/install/order.txt: not what wheelhouse/manifest.json gives: "
            f"markupsafe==3.0.4 (sha256 {digest}) missing; rebuild with `invoke build-wheels --clean`"
        )
        assert wheelhouse_state(repo) == before and checksums_verify(repo)

    invoke(repo, "build-wheels", "--clean")
    assert order.read_text() == original
    verifies(repo)


def test_a_deleted_install_manifest_stops_verify_and_build_wheels_and_clean_writes_it(repo: Path) -> None:
    order = house(repo) / "install/order.txt"
    original = order.read_text()
    order.unlink()
    before = wheelhouse_state(repo)
    for task in ("verify-wheelhouse", "build-wheels"):
        assert failure(repo, task) == "error: wheelhouse/install/order.txt: missing; rebuild with `invoke build-wheels --clean`"
        assert wheelhouse_state(repo) == before

    invoke(repo, "build-wheels", "--clean")
    assert order.read_text() == original
    verifies(repo)


def test_an_install_manifest_the_current_lock_no_longer_gives_is_named_stale(repo: Path) -> None:
    lock = repo / "requirements/order.txt"
    flask = next(w for w in manifest(repo)["wheels"] if w["name"] == "flask")
    # The lock no longer allows the wheel the wheelhouse holds for flask.
    lock.write_text(re.sub(rf" \\\n    --hash=sha256:{flask['sha256']}", "", lock.read_text()))
    before = wheelhouse_state(repo)
    line = failure(repo, "verify-wheelhouse")
    assert line == (
        "error: wheelhouse/install/order.txt: stale: requirements/order.txt pins flask==3.1.3 and no wheel in "
        "wheelhouse/manifest.json has one of its locked hashes for the target; run `invoke build-wheels`"
    )
    assert wheelhouse_state(repo) == before and checksums_verify(repo)


def test_an_install_manifest_older_than_the_first_party_sources_is_named_stale(repo: Path) -> None:
    module = repo / "services/order/src/order_manager/__init__.py"
    module.write_text(module.read_text() + "\n# edited after the build\n")
    before = wheelhouse_state(repo)
    line = failure(repo, "verify-wheelhouse")
    assert line == (
        "error: wheelhouse/install/order.txt: stale: no wheel in wheelhouse/manifest.json is built from the current "
        "services/order (order-manager 0.1.0): its files, version, build backend or last commit changed; run `invoke build-wheels`"
    )
    assert wheelhouse_state(repo) == before and checksums_verify(repo)


# SHA256SUMS and stray files


def _edit_a_digest(path: Path) -> None:
    text = path.read_text()
    replace(path, re.sub(r"^[0-9a-f]{64}(  flask-)", "0" * 64 + r"\1", text, flags=re.M))


def _add_a_line(path: Path) -> None:
    replace(path, path.read_text() + f"{'1' * 64}  notes.txt\n")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_edit_a_digest, "flask-3.1.3-py3-none-any.whl: expected {flask}, found " + "0" * 64),
        (_add_a_line, "notes.txt not expected"),
        (Path.unlink, None),
    ],
    ids=["digest-edited", "line-added", "deleted"],
)
def test_a_damaged_sha256sums_stops_verify_and_build_wheels_and_clean_writes_it(repo: Path, edit: Callable[[Path], None], expected: str | None) -> None:
    sums = house(repo) / "SHA256SUMS"
    original = sums.read_text()
    flask = next(w["sha256"] for w in manifest(repo)["wheels"] if w["name"] == "flask")
    edit(sums)
    before = wheelhouse_state(repo)
    for task in ("verify-wheelhouse", "build-wheels"):
        line = failure(repo, task)
        if expected is None:
            assert line == "error: wheelhouse/SHA256SUMS: missing; rebuild with `invoke build-wheels --clean`"
        else:
            assert line == f"error: wheelhouse/SHA256SUMS: not what the wheels and wheelhouse/manifest.json give: {expected.format(flask=flask)}; rebuild with `invoke build-wheels --clean`"
        assert wheelhouse_state(repo) == before

    invoke(repo, "build-wheels", "--clean")
    assert sums.read_text() == original
    verifies(repo)


@pytest.mark.parametrize("stray", ["notes.txt", "evil-1.0-py3-none-any.whl", "install/ghost.txt", "cache/leftover.bin"])
def test_a_stray_file_is_named_by_verify_and_left_out_by_build_wheels(repo: Path, stray: str) -> None:
    path = house(repo) / stray
    path.parent.mkdir(exist_ok=True)
    path.write_text("not from build-wheels\n")
    before = wheelhouse_state(repo)
    shown = stray.split("/")[0] + "/" if stray.startswith("cache/") else stray
    line = failure(repo, "verify-wheelhouse")
    assert line.startswith(f"error: wheelhouse/{shown}: not part of the wheelhouse (it holds only the wheels manifest.json lists, ")
    assert line.endswith("run `invoke build-wheels` to leave it out")
    assert wheelhouse_state(repo) == before and checksums_verify(repo)

    result = invoke(repo, "build-wheels")
    assert f"wheelhouse/{shown}: not part of the wheelhouse; left out of the new generation" in result.stderr
    assert not (house(repo) / stray).exists()
    verifies(repo)


# manifest.json of the wrong shape


def _entry(document: dict[str, Any], file: str = ORDER_MANAGER) -> dict[str, Any]:
    entry: dict[str, Any] = next(w for w in document["wheels"] if w["file"] == file)
    return entry


SHAPES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "a-list": (lambda d: [d], "expected a JSON object, found a list [{"),
    "no-wheels": (lambda d: {k: v for k, v in d.items() if k != "wheels"}, "expected the keys format, services, target (or targets) and wheels, found format, services, target"),
    "target-and-targets": (
        lambda d: {**d, "targets": [d["target"], d["target"]]},
        "expected the keys format, services, target (or targets) and wheels, found format, services, target, targets, wheels",
    ),
    "targets-of-one": (lambda d: {"targets": [d.pop("target")], **d}, 'expected "targets" to be a list of two or more target objects, found a list [{'),
    "targets-of-one-architecture-twice": (
        lambda d: {"targets": [d["target"], d.pop("target")], **d},
        'expected "targets" to name each architecture once, found x86_64, x86_64',
    ),
    "wheels-an-object": (lambda d: {**d, "wheels": {"a": 1}}, 'expected "wheels" to be a list of wheel entries, found an object {"a": 1}'),
    "services-a-string": (lambda d: {**d, "services": "order"}, 'expected "services" to be a list of service names, found a string "order"'),
    "target-without-abi": (
        lambda d: {**d, "target": {k: v for k, v in d["target"].items() if k != "abi"}},
        'expected "target" to be an object of the strings abi, implementation, platform, python_version, found an object',
    ),
    "entry-a-string": (lambda d: {**d, "wheels": ["flask.whl"]}, 'wheels[0]: expected an object with the keys name, version, file, sha256, origin, services, found a string "flask.whl"'),
    "entry-without-sha256": (lambda d: _entry(d).pop("sha256") and d, "expected the key 'sha256' (64 hex digits), found the keys file, name, origin, services, version"),
    "sha256-a-number": (lambda d: _entry(d).update(sha256=12) or d, "expected 'sha256' to be 64 hex digits, found a number 12"),
    "origin-a-list": (lambda d: _entry(d).update(origin=[]) or d, "expected 'origin' to be an object, found a list []"),
    "origin-without-kind": (lambda d: _entry(d)["origin"].pop("kind") and d, "expected the origin kind built, downloaded or built-from-sdist, found null"),
    # As wheelpipe wrote it before it recorded the build environment: built again, with --clean.
    "sdist-origin-without-build-environment": (
        lambda d: _entry(d).update(origin={"kind": "built-from-sdist", "sdist": "order_manager-0.1.0.tar.gz", "locked_hash": "sha256:" + "0" * 64,
                                           "build_lock": "requirements/build.txt", "source_date_epoch": 1700000000}) or d,
        "expected the origin build_environment of a built-from-sdist wheel to be a string, found null",
    ),
    "file-of-another-wheel": (lambda d: _entry(d).update(file="flask-3.1.3-py3-none-any.whl") or d, 'expected \'file\' to be the wheel file name of order-manager 0.1.0, found a string "flask-3.1.3-py3-none-any.whl"'),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_manifest_of_the_wrong_shape_is_one_line_naming_what_was_expected(repo: Path, shape: str) -> None:
    mutate, expected = SHAPES[shape]
    write_manifest(repo, mutate(manifest(repo)))
    before = wheelhouse_state(repo)
    for task in ("verify-wheelhouse", "build-wheels"):
        line = failure(repo, task)
        assert line.startswith("error: wheelhouse/manifest.json: "), line
        assert expected in line, line
        assert line.endswith("; rebuild with `invoke build-wheels --clean`"), line
        assert wheelhouse_state(repo) == before


def test_a_manifest_that_is_not_json_is_named_and_clean_builds_it_anew(repo: Path) -> None:
    replace(house(repo) / "manifest.json", '{"format": 1, "wheels": [')
    before = wheelhouse_state(repo)
    line = failure(repo, "verify-wheelhouse")
    assert line.startswith("error: wheelhouse/manifest.json: unreadable (Expecting value: line 1 column ")
    assert wheelhouse_state(repo) == before
    invoke(repo, "build-wheels", "--clean")
    verifies(repo)


# --service keeps every other service's install manifest as it is


def test_one_service_rebuild_refuses_to_replace_a_shared_wheel_another_service_installs(repo: Path) -> None:
    module = repo / "shared/service_runtime/src/service_runtime/settings.py"
    module.write_text(module.read_text() + "\n# an edit without a version bump\n")
    before = wheelhouse_state(repo)
    line = failure(repo, "build-wheels", "--service", "order")
    assert line.startswith(f"error: shared/service_runtime (service-runtime): the new {SERVICE_RUNTIME} (sha256 ")
    assert "would replace the one service user installs (sha256 " in line
    assert line.endswith("run `invoke build-wheels` without --service, or bump the version in shared/service_runtime/pyproject.toml")
    assert wheelhouse_state(repo) == before and checksums_verify(repo)

    invoke(repo, "build-wheels")
    verifies(repo)


def test_one_service_rebuild_leaves_other_install_manifests_byte_identical(repo: Path) -> None:
    user = (house(repo) / "install/user.txt").read_bytes()
    order = (house(repo) / "install/order.txt").read_bytes()
    runtime = repo / "shared/service_runtime"
    (runtime / "src/service_runtime/settings.py").write_text((runtime / "src/service_runtime/settings.py").read_text() + "\n# a change\n")
    pyproject = runtime / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"', 1))
    result = invoke(repo, "build-wheels", "--service", "order")
    assert "building shared/service_runtime" in result.stderr and "building services/user" not in result.stderr
    assert (house(repo) / "install/user.txt").read_bytes() == user
    assert (house(repo) / "install/order.txt").read_bytes() != order
    assert "service-runtime==0.2.0" in (house(repo) / "install/order.txt").read_text()
    assert {SERVICE_RUNTIME, "service_runtime-0.2.0-py3-none-any.whl"} <= wheels(repo)
    assert checksums_verify(repo)
    # The wheelhouse is whole, but user's part is older than its sources: verify says so.
    line = failure(repo, "verify-wheelhouse")
    assert line.startswith(
        "error: wheelhouse/install/user.txt: differs from what requirements/user.txt, the first-party sources and "
        "wheelhouse/manifest.json give: service-runtime: expected ==0.2.0 sha256 "
    )
