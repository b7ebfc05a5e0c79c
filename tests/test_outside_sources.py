"""Sources outside a package's directory: what its backend's configuration names (Polylith's
bricks through poetry `packages ... from = "../../bases"`, hatch's force-include of `../`) is
staged with it, from what git sees, at the same relative place; the wheels hold the bricks,
are byte-identical from two clones, and a change to a brick affects the projects that ship it.
A path that leaves the repository, or a symlink that does, is one line.

The fixture (tests/packages/polylith) is shaped like a Polylith repository: bases/ and
components/ at the root, no distribution of their own, projects under projects/.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from monorepo import ROOT, commit_all, git, install_offline, invoke

from wheelpipe import load_repository
from wheelpipe.build import firstparty
from wheelpipe.errors import RepositoryError
from wheelpipe.includes import Include, find

PACKAGES = ROOT / "tests" / "packages"
GREETER = "projects/greeter/pyproject.toml"
COUNTER = "projects/counter/pyproject.toml"


def bring(destination: Path) -> Path:
    """The Polylith fixture as a team's own repository: a git checkout outside this one."""
    repository = Path(shutil.copytree(PACKAGES / "polylith", destination))
    git(repository, "init", "-q", "-b", "main")
    commit_all(repository, "a Polylith repository")
    return repository


def wheel(repository: Path, name: str) -> Path:
    (found,) = (repository / "wheelhouse").glob(f"{name}-*.whl")
    return found


def modules(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(n for n in archive.namelist() if ".dist-info/" not in n)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = bring(tmp_path_factory.mktemp("polylith") / "monorepo")
    invoke(repository, "lock")
    commit_all(repository, "locked")
    return repository


@pytest.fixture
def repository(locked: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(locked, tmp_path / "monorepo", symlinks=True))


# -- what a configuration names (no build) -------------------------------------------------


def test_poetry_from_hatch_force_include_and_setuptools_package_dir_name_paths_outside_the_package() -> None:
    poetry = {"tool": {"poetry": {"packages": [{"include": "ns/base", "from": "../../bases"}, {"include": "inside", "from": "src"}, {"include": "ns/*", "from": "../../components"}]}}}
    assert find(poetry, "poetry.core.masonry.api", "projects/app") == (
        Include("bases/ns/base", "[tool.poetry] packages[0] from", "../../bases", ".wheelpipe-outside/bases/ns/base"),
        Include("components/ns", "[tool.poetry] packages[2] from", "../../components", ".wheelpipe-outside/components/ns"),
    )
    hatch = {"tool": {"hatch": {"build": {"targets": {"wheel": {"force-include": {"../x": "x", "README.md": "r"}, "sources": {"../../src": ""}}}}}}}
    assert [(i.path, i.key, i.staged) for i in find(hatch, "hatchling.build", "apps/api")] == [
        ("apps/x", "[tool.hatch.build.targets.wheel] force-include", "../x"),
        ("src", "[tool.hatch.build.targets.wheel] sources", "../../src"),
    ]
    setuptools = {"tool": {"setuptools": {"package-dir": {"": "../lib"}}}}
    assert [i.path for i in find(setuptools, "setuptools.build_meta", "apps/api")] == ["apps/lib"]
    # Only what the package's own backend reads: a [tool.poetry] table under hatchling names nothing.
    assert find(poetry, "hatchling.build", "projects/app") == ()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tool": {"poetry": {"packages": [{"include": "ns/base", "from": "../../../bases"}]}}},
         "projects/app/pyproject.toml: [tool.poetry] packages[0] from '../../../bases': leaves the repository (it names ../bases/ns/base, outside the repository's root)"),
        ({"tool": {"hatch": {"build": {"force-include": {"/etc": "etc"}}}}},
         "projects/app/pyproject.toml: [tool.hatch.build] force-include '/etc': an absolute path; name it relative to the package, inside the repository"),
    ],
    ids=["escaping-from", "absolute-force-include"],
)
def test_a_path_that_leaves_the_repository_is_one_line_naming_the_file_the_key_and_the_path(data: dict[str, Any], expected: str) -> None:
    backend = "poetry.core.masonry.api" if "poetry" in data["tool"] else "hatchling.build"
    with pytest.raises(RepositoryError) as raised:
        find(data, backend, "projects/app")
    assert str(raised.value) == expected


# -- built, reproducibly --------------------------------------------------------------------

@pytest.mark.network
def test_polylith_projects_build_with_their_bricks_byte_identical_from_two_clones(locked: Path, tmp_path: Path) -> None:
    first = Path(shutil.copytree(locked, tmp_path / "one" / "monorepo", symlinks=True))
    second = tmp_path / "elsewhere" / "deeper" / "clone"
    second.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", str(locked), str(second)], check=True)
    invoke(first, "build-wheels")
    invoke(second, "build-wheels")

    assert modules(wheel(first, "polyshop_greeter")) == ["polyshop/greeter_api/__init__.py", "polyshop/words/__init__.py"]
    assert modules(wheel(first, "polyshop_counter")) == ["polyshop/tally/__init__.py", "polyshop/words/__init__.py"]
    for name in ("polyshop_greeter", "polyshop_counter"):
        assert wheel(first, name).read_bytes() == wheel(second, name).read_bytes(), name

    # The bricks are the service: installed offline from the wheelhouse, its console script runs.
    venv = tmp_path / "venv"
    installed = install_offline(first, "greeter", venv)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    ran = subprocess.run([venv / "bin" / "polyshop-greeter"], capture_output=True, text=True, check=True)
    assert ran.stdout == "hello, polylith\n"
    assert "nothing to build" in invoke(first, "build-wheels").stderr


@pytest.mark.network
def test_a_change_to_a_brick_rebuilds_and_affects_exactly_the_projects_that_include_it(repository: Path) -> None:
    invoke(repository, "build-wheels")
    before = {name: wheel(repository, name).read_bytes() for name in ("polyshop_greeter", "polyshop_counter")}
    edit(repository / "components/polyshop/tally/__init__.py", "len(", "2 * len(")
    assert invoke(repository, "affected", "--since", "HEAD").stdout.split() == ["counter"]
    rebuilt = invoke(repository, "build-wheels")
    assert "building projects/counter" in rebuilt.stderr and "building projects/greeter" not in rebuilt.stderr, rebuilt.stderr
    assert wheel(repository, "polyshop_greeter").read_bytes() == before["polyshop_greeter"]
    assert wheel(repository, "polyshop_counter").read_bytes() != before["polyshop_counter"]

    commit_all(repository, "tally counts twice")
    edit(repository / "components/polyshop/words/__init__.py", "hello", "hi")
    assert invoke(repository, "affected", "--since", "HEAD").stdout.split() == ["counter", "greeter"]
    commit_all(repository, "words say hi")
    # A brick no project names affects none.
    (repository / "components/polyshop/unused").mkdir()
    (repository / "components/polyshop/unused/__init__.py").write_text("X = 1\n")
    assert invoke(repository, "affected", "--since", "HEAD").stdout.split() == []


@pytest.mark.network
def test_the_commit_and_the_working_tree_stage_the_same_bricks(repository: Path) -> None:
    """A release builds from the commit (streamed from git), build-wheels from the working tree:
    both list the bricks, through a symlinked directory too, and agree on the fingerprint."""
    (repository / "projects/counter/bricks").symlink_to("../../components")
    edit(repository / COUNTER, '"../../components/polyshop/tally"', '"bricks/polyshop/tally"')
    commit_all(repository, "the counter reaches its bricks through a symlinked directory")
    repo = load_repository(repository)
    counter = repo.packages["polyshop-counter"]
    head = git(repository, "rev-parse", "HEAD").strip()
    tree, commit = firstparty.WorkingTree(repo.root), firstparty.Commit(repo.root, head)
    staged = [f.path for f in commit.files(counter)]
    assert "bricks/polyshop/tally/__init__.py" in staged and "../../components/polyshop/words/__init__.py" in staged
    assert [f.path for f in tree.files(counter)] == staged
    assert firstparty.fingerprint(tree, counter) == firstparty.fingerprint(commit, counter)
    invoke(repository, "build-wheels")
    assert modules(wheel(repository, "polyshop_counter")) == ["polyshop/tally/__init__.py", "polyshop/words/__init__.py"]
    # What the link stands for is the counter's: a change there affects it.
    edit(repository / "components/polyshop/tally/__init__.py", "len(", "2 * len(")
    assert invoke(repository, "affected", "--since", "HEAD").stdout.split() == ["counter"]


# -- hostile and careless edits --------------------------------------------------------------


@pytest.mark.network
def test_a_from_path_escaping_the_repository_is_one_line_and_nothing_is_built(repository: Path) -> None:
    (repository.parent / "bases/polyshop/greeter_api").mkdir(parents=True)
    (repository.parent / "bases/polyshop/greeter_api/__init__.py").write_text("STOLEN = True\n")
    edit(repository / GREETER, 'from = "../../bases"', 'from = "../../../bases"')
    result = invoke(repository, "build-wheels", check=False)
    assert result.returncode == 1
    assert errors(result) == [
        f"error: {GREETER}: [tool.poetry] packages[0] from '../../../bases': leaves the repository "
        "(it names ../bases/polyshop/greeter_api, outside the repository's root)"
    ]
    assert not (repository / "wheelhouse").exists()


@pytest.mark.network
def test_a_symlink_in_a_brick_to_outside_the_repository_is_refused_naming_it(repository: Path) -> None:
    (repository.parent / "outside").mkdir()
    (repository.parent / "outside/secrets.py").write_text("TOKEN = 'x'\n")
    (repository / "components/polyshop/words/vendored").symlink_to("../../../../outside")
    commit_all(repository, "a brick links out of the repository")
    result = invoke(repository, "build-wheels", check=False)
    assert result.returncode == 1
    assert errors(result) == ["error: components/polyshop/words/vendored: symlink to a path outside the repository (../../../../outside)"]
    assert not (repository / "wheelhouse").exists()


@pytest.mark.network
def test_a_force_include_of_what_git_does_not_see_is_one_line(repository: Path) -> None:
    (repository / ".git/info/exclude").write_text("scratch/\n")
    (repository / "components/polyshop/scratch").mkdir()
    (repository / "components/polyshop/scratch/__init__.py").write_text("LOCAL = True\n")
    edit(repository / COUNTER, '"../../components/polyshop/tally"', '"../../components/polyshop/scratch"')
    result = invoke(repository, "build-wheels", check=False)
    assert result.returncode == 1
    assert errors(result) == [
        f"error: {COUNTER}: [tool.hatch.build.targets.wheel] force-include '../../components/polyshop/scratch': "
        "names components/polyshop/scratch, where git sees no file"
    ]
