"""The README's "Bringing your monorepo": each worked example is a monorepo of another team's
shape (tests/packages/migrate_*), brought under the pipeline with only the edits the guide
lists, then locked (keeping the team's pins), built, tested against its wheels and installed
offline, exactly as the guide says. Nothing here depends on this repository's services."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from monorepo import ROOT, commit_all, git, install_offline, invoke

from wheelpipe.lockfile import parse_pins

PACKAGES = ROOT / "tests" / "packages"


@dataclass(frozen=True)
class Example:
    fixture: str
    team_pins: str  # the file the team's pins come from
    pinned: str  # the service whose first lock starts from them
    kept: dict[str, str]  # some of those pins, as the first lock must keep them
    service: str  # the service installed offline and run
    command: list[str]  # its console script and arguments
    says: str  # the first line it prints
    tests: str  # a package's tests, run against its wheel


EXAMPLES = {
    "poetry": Example(
        "migrate_poetry", "services/order/poetry.lock", "order", {"flask": "3.0.3", "werkzeug": "3.0.6", "markupsafe": "2.1.5"},
        "user", ["shop-user"], "eyJ1c2VyIjoiZGVtbyJ9.Qkc5d200Jb_wpvIprZPmMLwx5VA", "services/order/tests",
    ),
    "setuptools": Example(
        "migrate_setuptools", "requirements.txt", "reporter", {"attrs": "23.2.0", "click": "8.1.7"},
        "reporter", ["acme-reporter", "--every", "0", "--rounds", "1"], "report 1: 1 item(s), total 1", "apps/reporter/tests",
    ),
    "uv": Example(
        "migrate_uv", "uv.lock", "api", {"itsdangerous": "2.1.2", "markupsafe": "2.1.5"},
        "api", ["uvshop-api"], "demo", "apps/api/tests",
    ),
}


def bring(fixture: str, destination: Path) -> Path:
    """The fixture as the team's own repository: a git checkout outside this one."""
    repository = Path(shutil.copytree(PACKAGES / fixture, destination))
    assert not repository.resolve().is_relative_to(ROOT)
    git(repository, "init", "-q", "-b", "main")
    commit_all(repository, "the team's monorepo, with the guide's edits")
    return repository


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_worked_example_locks_keeping_the_teams_pins_builds_tests_and_installs_offline(name: str, tmp_path: Path) -> None:
    example = EXAMPLES[name]
    repository = bring(example.fixture, tmp_path / "monorepo")

    locked = invoke(repository, "lock")
    # Every third-party pin of the team's file fits, so every one is kept (first-party names
    # in it, like Poetry's path dependencies, are not pins).
    assert f"requirements/{example.pinned}.txt: kept " in locked.stderr, locked.stderr
    kept = locked.stderr.split(f"requirements/{example.pinned}.txt: kept ", 1)[1].split("\n", 1)[0]
    count, _, rest = kept.partition(" of ")
    assert rest.startswith(f"{count} pins of {example.team_pins}"), kept
    pins = parse_pins(repository / "requirements" / f"{example.pinned}.txt", f"requirements/{example.pinned}.txt")
    assert {name: pins[name].version for name in example.kept} == example.kept
    invoke(repository, "lock", "--check")

    invoke(repository, "build-wheels")
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", example.tests], cwd=repository, capture_output=True, text=True, check=False)
    assert tested.returncode == 0 and " passed" in tested.stdout, tested.stdout + tested.stderr

    venv = tmp_path / "venv"
    installed = install_offline(repository, example.service, venv)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    ran = subprocess.run([str(venv / "bin" / example.command[0]), *example.command[1:]], capture_output=True, text=True, check=False, timeout=60)
    assert ran.returncode == 0 and ran.stdout.splitlines()[0] == example.says, ran.stdout + ran.stderr


@pytest.mark.slow
def test_a_poetry_path_dependency_is_one_line_saying_what_to_write_instead(tmp_path: Path) -> None:
    """The edit the guide asks of a Poetry monorepo, undone: the wheel would carry this
    machine's path, so the pipeline refuses before it writes anything."""
    repository = bring("migrate_poetry", tmp_path / "monorepo")
    pyproject = repository / "services" / "order" / "pyproject.toml"
    text = pyproject.read_text()
    assert 'discount-calculator = "^0.3"\n' in text
    pyproject.write_text(text.replace('discount-calculator = "^0.3"\n', 'discount-calculator = { path = "../../shared/discount_calculator", develop = true }\n'))
    commit_all(repository, "a path dependency, as Poetry teams write it")

    result = invoke(repository, "lock", check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert errors[0].startswith("error: services/order (shop-order) requires discount-calculator @ file:///"), errors[0]
    assert errors[0].endswith(
        "a path on this machine that its wheel would carry; require discount-calculator by name or version "
        "and mark it [tool.wheelpipe.sources] discount-calculator = { workspace = true }"
    )
    assert not (repository / "requirements" / "order.txt").exists()


def test_the_readme_walks_through_each_example_by_its_fixture() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Bringing your monorepo") :]
    section = section[: section.index("\n## ", 1)]
    for example in EXAMPLES.values():
        assert f"tests/packages/{example.fixture}" in section, example.fixture


# --- services whose teams pinned different versions (tests/packages/migrate_divergent) ------

DIVERGENT = {"order": "1.16.0", "user": "1.17.0"}  # six, as each team pinned it


def tooling_six() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("six")
    except metadata.PackageNotFoundError:
        return None


@pytest.mark.slow
def test_services_whose_teams_pin_different_versions_keep_them_and_a_shared_package_is_tested_in_each_environment(tmp_path: Path) -> None:
    import json

    repository = bring("migrate_divergent", tmp_path / "monorepo")
    locked = invoke(repository, "lock")
    assert "requirements/order.txt: kept 1 of 1 pins of services/order/requirements.txt" in locked.stderr
    assert "requirements/user.txt: kept 1 of 1 pins of services/user/poetry.lock" in locked.stderr
    assert "six: the services pin different versions (each installs its own): 1.16.0 (order), 1.17.0 (user)" in locked.stderr
    assert {s: parse_pins(repository / f"requirements/{s}.txt")["six"].version for s in DIVERGENT} == DIVERGENT
    invoke(repository, "lock", "--check")

    invoke(repository, "build-wheels")
    house = repository / "wheelhouse"
    assert sorted(p.name for p in house.glob("six-*.whl")) == ["six-1.16.0-py2.py3-none-any.whl", "six-1.17.0-py2.py3-none-any.whl"]
    assert len(list(house.glob("wording-*.whl"))) == 1, "a pure wheel both services install is stored once"
    for service, version in DIVERGENT.items():
        assert parse_pins(house / "install" / f"{service}.txt")["six"].version == version
    manifest = json.loads((house / "manifest.json").read_text())
    assert {w["version"]: w["services"] for w in manifest["wheels"] if w["name"] == "six"} == {"1.16.0": ["order"], "1.17.0": ["user"]}
    invoke(repository, "verify-wheelhouse")

    # The shared package's tests: in this process for a service whose pins the tooling venv
    # has, in a pytest of its own in the environment of each other service.
    elsewhere = [service for service, version in DIVERGENT.items() if version != tooling_six()]
    assert elsewhere, "the tooling venv cannot have both versions of six"

    def test_wording() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "shared/wording/tests"], cwd=repository, capture_output=True, text=True, check=False)

    tested = test_wording()
    assert tested.returncode == 0, tested.stdout + tested.stderr
    for service in elsewhere:
        assert f"tests::in the environment of {service} PASSED" in tested.stdout, tested.stdout
    assert ("test_wording.py::test_six_is_the_installed_distribution PASSED" in tested.stdout) == (len(elsewhere) < len(DIVERGENT)), tested.stdout

    # Each environment really is the service's: a test that order's six fails fails there.
    test_file = repository / "shared/wording/tests/test_wording.py"
    test_file.write_text(test_file.read_text() + '\n\ndef test_six_is_not_the_one_order_pins():\n    assert six.__version__ != "1.16.0"\n')
    invoke(repository, "build-wheels")
    failed = test_wording()
    assert failed.returncode == 1
    where = "tests::in the environment of order" if "order" in elsewhere else "test_wording.py::test_six_is_not_the_one_order_pins"
    assert f"FAILED shared/wording/{where}" in failed.stdout, failed.stdout
    assert "AssertionError: assert '1.16.0' != '1.16.0'" in failed.stdout
    if "user" in elsewhere:
        assert "tests::in the environment of user PASSED" in failed.stdout

    for service, version in DIVERGENT.items():
        venv = tmp_path / f"venv-{service}"
        installed = install_offline(repository, service, venv)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        ran = subprocess.run([str(venv / "bin" / f"{service}-app")], capture_output=True, text=True, check=False, timeout=60)
        assert ran.stdout.strip() == f"{service} on six {version}", ran.stdout + ran.stderr


@pytest.mark.network
def test_the_one_version_policy_refuses_the_teams_divergent_pins_in_one_line(tmp_path: Path) -> None:
    repository = bring("migrate_divergent", tmp_path / "monorepo")
    pyproject = repository / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n[tool.wheelpipe.lock]\none-version = true\n")
    result = invoke(repository, "lock", check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: six: [tool.wheelpipe.lock] one-version = true, but the service locks pin six 1.16.0 (order), 1.17.0 (user); "
        "lock them to one version (`invoke lock --upgrade-package six`, or `six==VERSION`)"
    ]
    assert "Traceback" not in result.stderr
    assert not (repository / "requirements").exists()


@pytest.mark.network
def test_service_and_upgrade_package_lock_a_repository_with_no_locks_keeping_the_teams_pins(tmp_path: Path) -> None:
    repository = bring("migrate_divergent", tmp_path / "monorepo")
    one = invoke(repository, "lock", "--service", "order")
    assert "requirements/user.txt: no lock yet; locking it too, keeping the team's pins" in one.stderr
    assert {s: parse_pins(repository / f"requirements/{s}.txt")["six"].version for s in DIVERGENT} == DIVERGENT
    invoke(repository, "lock", "--check")

    shutil.rmtree(repository / "requirements")
    moved = invoke(repository, "lock", "--upgrade-package", "six==1.17.0")
    assert {s: parse_pins(repository / f"requirements/{s}.txt")["six"].version for s in DIVERGENT} == {"order": "1.17.0", "user": "1.17.0"}
    assert "requirements/order.txt: moved six 1.16.0 -> 1.17.0: --upgrade-package six==1.17.0" in moved.stderr
    assert "requirements/user.txt: kept 1 of 1 pins of services/user/poetry.lock" in moved.stderr
    assert "different versions" not in moved.stderr
    invoke(repository, "lock", "--check")
