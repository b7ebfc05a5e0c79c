"""`invoke affected`: which services a change since a git ref affects, on throwaway git repositories."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from monorepo import commit_all, copy_repository, git, invoke

from wheelpipe import load_repository
from wheelpipe.affected import affected_services
from wheelpipe.errors import GitError

ALL = ["order", "pricing-audit", "user"]


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One committed copy of the monorepo per module; each test works on a clone of it."""
    return copy_repository(tmp_path_factory.mktemp("affected") / "monorepo")


@pytest.fixture
def repo(committed: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "monorepo"
    subprocess.run(["git", "clone", "-q", str(committed), str(clone)], check=True)
    return clone


def edit(root: Path, path: str, change: Callable[[str], str] = lambda text: text + "\n# changed\n") -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(change(target.read_text() if target.exists() else ""))


def replace(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text, f"{old!r} not found"
        return text.replace(old, new, count)

    return change


def changed_since_last_commit(root: Path, *paths: str) -> dict[str, list[str]]:
    """Commit an edit of each path, then ask what changed since the commit before."""
    for path in paths:
        edit(root, path)
    commit_all(root, "change")
    return affected_services(load_repository(root), "HEAD~1")


def test_shared_package_change_affects_only_the_services_using_it(repo: Path) -> None:
    path = "shared/discount_calculator/src/discount_calculator/discount.py"
    assert changed_since_last_commit(repo, path) == {"order": [path], "pricing-audit": [path]}


def test_service_code_change_affects_only_that_service(repo: Path) -> None:
    path = "services/user/src/user_manager/users.py"
    assert changed_since_last_commit(repo, path) == {"user": [path]}


def test_documentation_and_tests_affect_nothing(repo: Path) -> None:
    assert changed_since_last_commit(
        repo,
        "README.md",
        "services/user/docs/operations.md",
        "services/user/CHANGES.md",
        "services/order/tests/test_server.py",
        "shared/discount_calculator/tests/test_discount.py",
    ) == {}


def test_a_packages_declared_readme_is_part_of_its_wheel(repo: Path) -> None:
    # `readme = "README.md"` puts the file into the wheel's METADATA (and the build needs it).
    assert changed_since_last_commit(repo, "services/user/README.md") == {"user": ["services/user/README.md"]}
    readme = "shared/discount_calculator/README.md"
    assert changed_since_last_commit(repo, readme) == {"order": [readme], "pricing-audit": [readme]}


def test_markdown_inside_the_sources_is_package_data(repo: Path) -> None:
    path = "services/user/src/user_manager/help.md"
    assert changed_since_last_commit(repo, path) == {"user": [path]}


def test_a_service_lock_affects_that_service(repo: Path) -> None:
    assert changed_since_last_commit(repo, "requirements/order.txt") == {"order": ["requirements/order.txt"]}
    assert changed_since_last_commit(repo, "requirements/user.in") == {"user": ["requirements/user.in"]}


@pytest.mark.parametrize(
    "path",
    ["src/wheelpipe/dockerfiles/service.Dockerfile", "dockerfiles/service.Dockerfile", "src/wheelpipe/importcheck.py"],
    ids=["shipped", "the-monorepo's-own", "the-import-check"],
)
def test_the_dockerfile_affects_every_service(repo: Path, path: str) -> None:
    assert changed_since_last_commit(repo, path) == {service: [path] for service in ALL}


def test_root_pyproject_affects_every_service_only_through_the_target(repo: Path) -> None:
    edit(repo, "pyproject.toml", replace('minversion = "8.0"', 'minversion = "8.1"'))
    edit(repo, "pyproject.toml", replace('version = "0.1.0"', 'version = "0.2.0"'))  # the release version
    commit_all(repo, "pytest settings and release version")
    assert affected_services(load_repository(repo), "HEAD~1") == {}

    edit(repo, "pyproject.toml", replace("manylinux_2_36_x86_64", "manylinux_2_34_x86_64"))
    commit_all(repo, "another target platform")
    assert affected_services(load_repository(repo), "HEAD~1") == {service: ["pyproject.toml"] for service in ALL}


@pytest.mark.parametrize(("lock", "pin"), [("dev", "uv"), ("build", "hatchling"), ("build", "pathspec")])
def test_the_image_tooling_pins_affect_every_service(repo: Path, lock: str, pin: str) -> None:
    """The installer in the tooling lock, and any pin of the build lock (a backend, or what
    a backend needs: pathspec decides which files hatchling puts in a wheel)."""
    path = f"requirements/{lock}.txt"

    def bump(text: str) -> str:
        changed, count = re.subn(rf"^{pin}==(\S+) ", rf"{pin}==\g<1>.post1 ", text, count=1, flags=re.MULTILINE)
        assert count == 1, f"no {pin} pin in {path}"
        return changed

    edit(repo, path, bump)
    commit_all(repo, f"another {pin}")
    assert affected_services(load_repository(repo), "HEAD~1") == {service: [path] for service in ALL}


def test_a_build_lock_edit_that_moves_no_pin_affects_nothing(repo: Path) -> None:
    edit(repo, "requirements/build.txt", lambda text: text.replace("    # via hatchling\n", "    # via hatchling (a note)\n", 1))
    commit_all(repo, "a comment in the build lock")
    assert affected_services(load_repository(repo), "HEAD~1") == {}


def test_other_tooling_pins_affect_nothing(repo: Path) -> None:
    edit(repo, "requirements/dev.txt", replace("invoke==3.0.3 ", "invoke==3.0.4 "))
    edit(repo, "requirements/dev.in", lambda text: text + "# a comment\n")
    commit_all(repo, "another invoke")
    assert affected_services(load_repository(repo), "HEAD~1") == {}


def test_a_new_service_is_affected(repo: Path) -> None:
    shutil.copytree(repo / "services/user", repo / "services/inventory")
    edit(repo, "services/inventory/pyproject.toml", replace('name = "user-manager"', 'name = "inventory-manager"'))
    commit_all(repo, "a new service")
    found = affected_services(load_repository(repo), "HEAD~1")
    assert list(found) == ["inventory"]
    assert "services/inventory/" in found["inventory"]
    assert "services/inventory/pyproject.toml" in found["inventory"]


def test_uncommitted_and_untracked_changes_count(repo: Path) -> None:
    edit(repo, "services/user/src/user_manager/users.py")  # tracked, not committed
    edit(repo, "shared/discount_calculator/src/discount_calculator/extra.py")  # untracked
    assert affected_services(load_repository(repo), "HEAD") == {
        "order": ["shared/discount_calculator/src/discount_calculator/extra.py"],
        "pricing-audit": ["shared/discount_calculator/src/discount_calculator/extra.py"],
        "user": ["services/user/src/user_manager/users.py"],
    }


def test_a_file_moved_between_packages_affects_both_sides(repo: Path) -> None:
    git(repo, "mv", "services/user/src/user_manager/health.py", "services/order/src/order_manager/health_copy.py")
    commit_all(repo, "move")
    found = affected_services(load_repository(repo), "HEAD~1")
    assert found == {
        "order": ["services/order/src/order_manager/health_copy.py"],
        "user": ["services/user/src/user_manager/health.py"],
    }


def test_pull_request_semantics_compare_with_the_merge_base(repo: Path) -> None:
    """Commits on the base branch after the fork are not the branch's changes."""
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "feature")
    edit(repo, "services/order/src/order_manager/server.py")
    commit_all(repo, "order change on the branch")
    git(repo, "checkout", "-q", "main")
    edit(repo, "services/user/src/user_manager/users.py")
    commit_all(repo, "user change on main after the fork")
    main = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "feature")
    assert main != base
    assert affected_services(load_repository(repo), main) == {"order": ["services/order/src/order_manager/server.py"]}


def test_the_first_commit_as_ref(repo: Path) -> None:
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    edit(repo, "services/user/src/user_manager/users.py")
    commit_all(repo, "one")
    edit(repo, "src/wheelpipe/dockerfiles/service.Dockerfile")
    commit_all(repo, "two")
    found = affected_services(load_repository(repo), first)
    assert found == {
        "order": ["src/wheelpipe/dockerfiles/service.Dockerfile"],
        "pricing-audit": ["src/wheelpipe/dockerfiles/service.Dockerfile"],
        "user": ["services/user/src/user_manager/users.py", "src/wheelpipe/dockerfiles/service.Dockerfile"],
    }


def test_a_bad_ref_is_one_line_naming_it(repo: Path) -> None:
    with pytest.raises(GitError, match="no-such-ref"):
        affected_services(load_repository(repo), "no-such-ref")
    result = invoke(repo, "affected", "--since", "no-such-ref", check=False)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "'no-such-ref'" in lines[0]


@pytest.mark.parametrize("ref", ["0" * 40, "", "deadbeef" * 5])
def test_all_if_unknown_takes_every_service_for_an_unknown_ref(repo: Path, ref: str) -> None:
    repository = load_repository(repo)
    with pytest.raises(GitError):
        affected_services(repository, ref)
    found = affected_services(repository, ref, all_if_unknown=True)
    assert list(found) == ALL
    assert all(len(reasons) == 1 and "not a known commit" in reasons[0] for reasons in found.values())


def test_task_output_plain_and_json(repo: Path) -> None:
    assert invoke(repo, "affected", "--since", "HEAD").stdout == ""  # nothing when none
    path = "shared/discount_calculator/src/discount_calculator/discount.py"
    edit(repo, path)
    edit(repo, "src/wheelpipe/dockerfiles/service.Dockerfile")
    commit_all(repo, "shared change and recipe")
    assert invoke(repo, "affected", "--since", "HEAD~1").stdout.splitlines() == ALL
    document = json.loads(invoke(repo, "affected", "--since", "HEAD~1", "--json").stdout)
    expected = {"order": [path, "src/wheelpipe/dockerfiles/service.Dockerfile"], "pricing-audit": [path, "src/wheelpipe/dockerfiles/service.Dockerfile"], "user": ["src/wheelpipe/dockerfiles/service.Dockerfile"]}
    assert document == {"since": "HEAD~1", "services": ALL, "reasons": expected}
    assert document["reasons"] == affected_services(load_repository(repo), "HEAD~1")


def test_task_github_output_feeds_a_matrix(repo: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "github_output"
    edit(repo, "requirements/user.txt")
    commit_all(repo, "user lock")
    env = {"GITHUB_OUTPUT": str(outputs)}
    invoke(repo, "affected", "--since", "HEAD~1", "--github-output", env=env)
    invoke(repo, "services", "--github-output", env=env)
    lines = outputs.read_text().splitlines()
    assert lines[0] == 'services=["user"]'
    assert json.loads(lines[1].split("=", 1)[1]) == {"user": ["requirements/user.txt"]}
    assert lines[2] == f"services={json.dumps(ALL, separators=(',', ':'))}"
    # Without GITHUB_OUTPUT the flag says what is missing.
    result = invoke(repo, "affected", "--since", "HEAD", "--github-output", env={"GITHUB_OUTPUT": ""}, check=False)
    assert result.returncode == 1 and "GITHUB_OUTPUT" in result.stderr


def test_services_task_lists_the_model(repo: Path) -> None:
    assert json.loads(invoke(repo, "services", "--json").stdout) == ALL
