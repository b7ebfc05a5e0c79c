"""The repository model: what load_repository discovers, and the one-line errors it reports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from monorepo import FIXTURE, TARGET_TABLE, git, invoke
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from wheelpipe.deploy import ChartRegistry
from wheelpipe.errors import PipelineError, RepositoryError, UnknownServiceError
from wheelpipe.model import HttpService, Repository
from wheelpipe.target import Target
from wheelpipe.workspace import load_repository

# --- helpers that build tiny fake monorepos in tmp_path ----------------------------------


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def write_root(root: Path, target: str | None = TARGET_TABLE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(target or "")
    return root


def write_package(
    root: Path,
    kind: str,
    directory: str,
    name: str,
    *,
    dependencies: list[str] | None = None,
    workspace: list[str] | None = None,
    service: bool | None = None,
    version: str = "0.1.0",
    raw_dependencies: str | None = None,
) -> Path:
    """A PEP 621 project under shared/ or services/; services get a [tool.wheelpipe.service] table."""
    path = root / kind / directory
    path.mkdir(parents=True, exist_ok=True)
    deps = raw_dependencies if raw_dependencies is not None else toml_list(dependencies or [])
    text = f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = {deps}\n'
    is_service = kind == "services" if service is None else service
    if is_service:
        text += f'\n[project.scripts]\n{name} = "{name.replace("-", "_")}.server:main"\n'
    if is_service:
        text += f'\n[tool.wheelpipe.service]\ncommand = "{name}"\nport-env = "{name.upper().replace("-", "_")}_PORT"\ndefault-port = 8080\n'
    if workspace:
        text += "\n[tool.wheelpipe.sources]\n" + "".join(f"{source} = {{ workspace = true }}\n" for source in workspace)
    (path / "pyproject.toml").write_text(text)
    return path


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    return write_root(tmp_path / "repo")


# --- the fixture monorepo (tests/packages/monorepo) ---------------------------------------


@pytest.fixture(scope="module")
def real() -> Repository:
    return load_repository(FIXTURE)


def test_discovers_the_services_and_shared_packages_of_the_monorepo(real: Repository) -> None:
    assert list(real.services) == ["order", "pricing-audit", "user"]
    assert real.services["order"].name == "order-manager"
    assert real.services["user"].name == "user-manager"
    shared = {p.name: p for p in real.packages.values() if p.kind == "shared"}
    assert list(shared) == ["discount-calculator", "service-runtime"]
    assert shared["discount-calculator"].directory == "shared/discount_calculator"
    assert real.service("order").directory == "services/order"


def test_closure_of_order_lists_its_internal_dependencies_first(real: Repository) -> None:
    assert [p.name for p in real.closure("order")] == ["discount-calculator", "service-runtime", "order-manager"]


def test_user_does_not_use_discount_calculator(real: Repository) -> None:
    assert [p.name for p in real.closure("user")] == ["service-runtime", "user-manager"]
    assert real.services_using("discount-calculator") == ["order", "pricing-audit"]


def test_third_party_requirements_of_order_exclude_first_party_names(real: Repository) -> None:
    requirements = real.third_party_requirements("order")
    names = {canonicalize_name(Requirement(line).name) for line in requirements}
    assert {"flask", "gunicorn"} <= names
    assert not names & set(real.packages)


def test_target_is_read_from_the_root_pyproject(real: Repository) -> None:
    assert real.target == Target(python_version="3.11", implementation="cp", abi="cp311", platform="manylinux_2_36_x86_64")
    assert real.target.describe() == "CPython 3.11 on manylinux_2_36_x86_64"


def test_several_platforms_are_one_target_each_in_the_declared_order_the_first_built(tmp_path: Path) -> None:
    table = TARGET_TABLE.replace('platform = "manylinux_2_36_x86_64"', 'platforms = ["manylinux_2_36_aarch64", "manylinux_2_36_x86_64"]')
    root = write_root(tmp_path / "repo", table)
    write_package(root, "services", "api", "api-server")
    repo = load_repository(root)
    assert [t.platform for t in repo.targets] == ["manylinux_2_36_aarch64", "manylinux_2_36_x86_64"]
    assert {(t.python_version, t.abi) for t in repo.targets} == {("3.11", "cp311")}
    assert repo.target == repo.targets[0]


def test_one_platform_is_one_target(real: Repository) -> None:
    assert real.targets == (real.target,)


def test_new_service_directory_is_discovered_without_any_other_edit(repo_copy: Path) -> None:
    service = repo_copy / "services" / "inventory"
    service.mkdir()
    (service / "pyproject.toml").write_text(
        "[project]\n"
        'name = "inventory-manager"\n'
        'version = "0.1.0"\n'
        'dependencies = ["flask>=3.0"]\n'
        "\n[project.scripts]\n"
        'inventory-manager = "inventory_manager.server:main"\n'
        "\n[tool.wheelpipe.service]\n"
        'command = "inventory-manager"\n'
        'port-env = "INVENTORY_MANAGER_PORT"\n'
        "default-port = 8003\n"
    )
    repo = load_repository(repo_copy)
    assert list(repo.services) == ["inventory", "order", "pricing-audit", "user"]
    assert repo.service("inventory").name == "inventory-manager"
    assert repo.select_services(None) == ["inventory", "order", "pricing-audit", "user"]
    assert repo.third_party_requirements("inventory") == ["flask>=3.0"]


def test_closure_follows_internal_dependencies_transitively(fake_root: Path) -> None:
    write_package(fake_root, "shared", "b", "shared-b", dependencies=["attrs>=23"])
    write_package(fake_root, "shared", "a", "shared-a", dependencies=["shared-b", "click>=8"], workspace=["shared-b"])
    write_package(fake_root, "services", "api", "api-server", dependencies=["shared-a", "flask>=3"], workspace=["shared-a"])
    repo = load_repository(fake_root)
    assert [p.name for p in repo.closure("api")] == ["shared-b", "shared-a", "api-server"]
    assert repo.third_party_requirements("api") == ["attrs>=23", "click>=8", "flask>=3"]
    assert repo.services_using("shared-b") == ["api"]


def test_internal_dependency_is_first_party_even_without_a_workspace_source(fake_root: Path) -> None:
    write_package(fake_root, "shared", "lib", "lib")
    write_package(fake_root, "services", "api", "api-server", dependencies=["lib>=0.1", "flask>=3"])
    repo = load_repository(fake_root)
    assert repo.service("api").internal == ("lib",)
    assert repo.third_party_requirements("api") == ["flask>=3"]


# --- errors: one line naming what is wrong ----------------------------------------------


def assert_one_line(error: pytest.ExceptionInfo[BaseException]) -> None:
    assert "\n" not in str(error.value)


def test_directory_under_services_without_pyproject_is_an_error_naming_it(fake_root: Path) -> None:
    write_package(fake_root, "services", "api", "api-server")
    (fake_root / "services" / "leftover").mkdir()
    with pytest.raises(RepositoryError, match=r"^services/leftover: no pyproject\.toml") as error:
        load_repository(fake_root)
    assert_one_line(error)


def test_cycle_between_two_shared_packages_names_both(fake_root: Path) -> None:
    write_package(fake_root, "shared", "a", "pkg-a", dependencies=["pkg-b"], workspace=["pkg-b"])
    write_package(fake_root, "shared", "b", "pkg-b", dependencies=["pkg-a"], workspace=["pkg-a"])
    with pytest.raises(RepositoryError, match=r"dependency cycle.*shared/a \(pkg-a\) -> shared/b \(pkg-b\) -> shared/a \(pkg-a\)") as error:
        load_repository(fake_root)
    assert_one_line(error)


def test_package_depending_on_itself_is_an_error(fake_root: Path) -> None:
    write_package(fake_root, "shared", "a", "pkg-a", dependencies=["pkg-a"])
    with pytest.raises(RepositoryError, match=r"shared/a \(pkg-a\) depends on itself"):
        load_repository(fake_root)


def test_missing_workspace_dependency_names_the_depending_package_and_the_missing_name(fake_root: Path) -> None:
    write_package(fake_root, "shared", "lib", "lib")
    write_package(fake_root, "services", "api", "api-server", dependencies=["ghost-lib"], workspace=["ghost-lib"])
    with pytest.raises(RepositoryError, match=r"services/api \(api-server\) depends on internal package 'ghost-lib', which does not exist") as error:
        load_repository(fake_root)
    assert_one_line(error)


def test_workspace_source_not_in_dependencies_is_an_error(fake_root: Path) -> None:
    write_package(fake_root, "shared", "lib", "lib")
    write_package(fake_root, "services", "api", "api-server", dependencies=["flask"], workspace=["lib"])
    with pytest.raises(RepositoryError, match=r"services/api/pyproject\.toml: .*'lib', which is not in \[project\] dependencies"):
        load_repository(fake_root)


@pytest.mark.parametrize("requirement", ["flask>=>3", "flask[", "not a requirement!"])
def test_malformed_requirement_names_the_file_and_the_requirement(fake_root: Path, requirement: str) -> None:
    write_package(fake_root, "services", "api", "api-server", dependencies=["gunicorn", requirement])
    pattern = rf"^services/api/pyproject\.toml:4: malformed requirement {re.escape(repr(requirement))}"
    with pytest.raises(RepositoryError, match=pattern) as error:
        load_repository(fake_root)
    assert_one_line(error)


@pytest.mark.parametrize("dependencies", ['"flask"', "[3]", '["flask", {name = "x"}]'])
def test_dependencies_that_are_not_a_list_of_strings_are_an_error(fake_root: Path, dependencies: str) -> None:
    write_package(fake_root, "services", "api", "api-server", raw_dependencies=dependencies)
    with pytest.raises(RepositoryError, match=r"^services/api/pyproject\.toml: \[project\] dependencies must be a list of requirement strings"):
        load_repository(fake_root)


def test_service_without_service_table_loads_without_image_settings(fake_root: Path) -> None:
    # Only an image needs the table (tests/test_service_kinds.py): locks and wheels do not.
    write_package(fake_root, "services", "api", "api-server", service=False)
    assert load_repository(fake_root).services["api"].service is None


def test_a_service_command_may_be_any_console_script_of_its_venv_which_the_image_build_checks(fake_root: Path) -> None:
    # uvicorn's or gunicorn's script is a dependency's, not the service's: only the image's venv
    # can say whether it is there (tests/test_team_services.py builds one that is not).
    path = write_package(fake_root, "services", "api", "api-server")
    text = (path / "pyproject.toml").read_text().replace('command = "api-server"', 'command = "gunicorn api.app:app"')
    (path / "pyproject.toml").write_text(text)
    settings = load_repository(fake_root).services["api"].service
    assert settings is not None
    assert settings.command == ("gunicorn", "api.app:app")


@pytest.mark.parametrize(("first", "second"), [("lib", "lib"), ("Shared_Lib", "shared-lib")])
def test_duplicate_distribution_names_name_both_directories(fake_root: Path, first: str, second: str) -> None:
    write_package(fake_root, "shared", "one", first)
    write_package(fake_root, "shared", "two", second)
    expected = canonicalize_name(second)
    with pytest.raises(RepositoryError, match=rf"^shared/two and shared/one both declare the distribution '{expected}'") as error:
        load_repository(fake_root)
    assert_one_line(error)


def test_duplicate_name_between_a_shared_package_and_a_service_is_an_error(fake_root: Path) -> None:
    write_package(fake_root, "shared", "api", "api-server")
    write_package(fake_root, "services", "api", "api-server")
    with pytest.raises(RepositoryError, match=r"services/api and shared/api both declare the distribution 'api-server'"):
        load_repository(fake_root)


def test_unknown_service_lists_the_valid_names(real: Repository) -> None:
    with pytest.raises(UnknownServiceError, match=r"^unknown service 'nope': expected one of order, pricing-audit, user$"):
        real.service("nope")
    with pytest.raises(UnknownServiceError, match=r"'nope'.*order, pricing-audit, user"):
        real.closure("nope")


# Each task that takes --service, with nothing built and no Docker engine: the name is refused
# before any of them builds, resolves or reaches an engine.
SERVICE_TASKS = ["build-wheels", "image", "verify-image"]  # lock: test_locks.py


@pytest.mark.parametrize("task", SERVICE_TASKS)
def test_every_task_refuses_an_unknown_service_listing_the_services_before_doing_anything(repo_copy: Path, task: str) -> None:
    result = invoke(repo_copy, task, "--service", "nope", check=False, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: unknown service 'nope': expected one of order, pricing-audit, user"
    assert git(repo_copy, "status", "--porcelain", "--ignored") == ""


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("", r"expected a \[tool\.wheelpipe\.target\] table"),
        ("[tool.wheelpipe]\ntarget = 3\n", r"expected a \[tool\.wheelpipe\.target\] table"),
        (TARGET_TABLE.replace('version = "1.0.0"', 'version = "one"'), r"\[tool\.wheelpipe\.release\] version must be a PEP 440 version, found 'one'"),
        (TARGET_TABLE.replace('abi = "cp311"\n', ""), r"needs string keys abi"),
        (TARGET_TABLE.replace('"3.11"', "3.11"), r"needs string keys python-version"),
        (TARGET_TABLE.replace('"3.11"', '"3.11.7"'), r"python-version must look like '3\.11', found '3\.11\.7'"),
        (TARGET_TABLE.replace("manylinux_2_36_x86_64", "linux_x86_64"), r"platform must be a manylinux_X_Y_ARCH tag, found 'linux_x86_64'"),
        (
            TARGET_TABLE.replace('platform = "manylinux_2_36_x86_64"', 'platfrom = "manylinux_2_36_x86_64"'),
            r"\[tool\.wheelpipe\.target\] has no key 'platfrom' \(known: python-version, implementation, abi, platform, platforms\)$",
        ),
        (
            TARGET_TABLE.replace("manylinux_2_36_x86_64", "manylinux_2_36_arm64"),
            r"target platform 'manylinux_2_36_arm64' names the architecture 'arm64', which wheelpipe does not build for \(known: x86_64, aarch64\); arm64 is aarch64: manylinux_2_36_aarch64$",
        ),
        (
            TARGET_TABLE.replace("manylinux_2_36_x86_64", "manylinux_2_36_riscv64"),
            r"names the architecture 'riscv64', which wheelpipe does not build for \(known: x86_64, aarch64\)$",
        ),
        (
            TARGET_TABLE.replace(
                'platform = "manylinux_2_36_x86_64"', 'platforms = ["manylinux_2_36_x86_64", "manylinux_2_36_aarch64"]\nplatform = "manylinux_2_36_x86_64"'
            ),
            r"\[tool\.wheelpipe\.target\] has both platform and platforms: name one platform, or the list of them$",
        ),
        (
            TARGET_TABLE.replace('platform = "manylinux_2_36_x86_64"', "platforms = []"),
            r"platforms must be a non-empty list of manylinux_X_Y_ARCH tags, found \[\]$",
        ),
        (
            TARGET_TABLE.replace('platform = "manylinux_2_36_x86_64"', 'platforms = "manylinux_2_36_aarch64"'),
            r"platforms must be a non-empty list of manylinux_X_Y_ARCH tags, found 'manylinux_2_36_aarch64'$",
        ),
        (
            TARGET_TABLE.replace('platform = "manylinux_2_36_x86_64"', 'platforms = ["manylinux_2_36_aarch64", "manylinux_2_41_aarch64"]'),
            r"platforms names aarch64 more than once \(manylinux_2_36_aarch64, manylinux_2_41_aarch64\): one platform per architecture$",
        ),
        (
            TARGET_TABLE.replace('platform = "manylinux_2_36_x86_64"', 'platforms = ["manylinux_2_36_x86_64", "manylinux_2_36_arm64"]'),
            r"names the architecture 'arm64'.*arm64 is aarch64",
        ),
    ],
    ids=[
        "no-table",
        "not-a-table",
        "bad-release-version",
        "missing-key",
        "not-a-string",
        "bad-python-version",
        "bad-platform",
        "misspelt-key",
        "arm64-alias",
        "unknown-architecture",
        "platform-and-platforms",
        "no-platforms",
        "platforms-not-a-list",
        "one-architecture-twice",
        "alias-in-platforms",
    ],
)
def test_missing_or_invalid_target_is_an_error_naming_the_root_pyproject(tmp_path: Path, table: str, message: str) -> None:
    root = write_root(tmp_path / "repo", table)
    write_package(root, "services", "api", "api-server")
    with pytest.raises(RepositoryError, match=rf"^pyproject\.toml: .*{message}") as error:
        load_repository(root)
    assert_one_line(error)


def test_invalid_toml_names_the_file(fake_root: Path) -> None:
    path = write_package(fake_root, "services", "api", "api-server")
    (path / "pyproject.toml").write_text("[project\nname = ")
    with pytest.raises(RepositoryError, match=r"services/api/pyproject\.toml: not valid TOML"):
        load_repository(fake_root)


# --- the workspace: where packages live ------------------------------------------------


def with_workspace(root: Path, table: str) -> None:
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n[tool.wheelpipe.workspace]\n" + table)


def test_workspace_patterns_find_services_and_shared_packages_in_any_layout(fake_root: Path) -> None:
    with_workspace(fake_root, 'services = ["apps/*", "stack/workers/*"]\nshared = ["libs/*"]\n')
    write_package(fake_root, "libs", "common", "common-lib")
    write_package(fake_root, "apps", "api", "api-server", dependencies=["common-lib"], service=True)
    write_package(fake_root, "stack/workers", "mailer", "mailer", service=True)
    write_package(fake_root, "services", "stray", "stray", service=True)  # not in the workspace now
    repo = load_repository(fake_root)
    assert list(repo.services) == ["api", "mailer"]
    assert repo.service("mailer").directory == "stack/workers/mailer"
    assert repo.service("api").internal == ("common-lib",)
    assert repo.packages["common-lib"].kind == "shared"


def test_directories_git_ignores_are_not_packages(fake_root: Path) -> None:
    write_package(fake_root, "services", "api", "api-server")
    (fake_root / "services" / "build-leftover").mkdir()  # no pyproject: would be an error
    (fake_root / ".gitignore").write_text("services/build-leftover/\n")
    subprocess.run(["git", "init", "-q"], cwd=fake_root, check=True)
    assert list(load_repository(fake_root).services) == ["api"]


def test_a_matched_directory_without_pyproject_names_it_and_the_way_out(fake_root: Path) -> None:
    with_workspace(fake_root, 'services = ["apps/*"]\n')
    write_package(fake_root, "apps", "api", "api-server", service=True)
    (fake_root / "apps" / "notes").mkdir()
    with pytest.raises(RepositoryError, match=r"^apps/notes: no pyproject\.toml .*\[tool\.wheelpipe\.workspace\]") as error:
        load_repository(fake_root)
    assert_one_line(error)


def test_a_directory_matched_as_service_and_shared_is_an_error(fake_root: Path) -> None:
    with_workspace(fake_root, 'services = ["pkgs/*"]\nshared = ["pkgs/*"]\n')
    write_package(fake_root, "pkgs", "api", "api-server", service=True)
    with pytest.raises(
        RepositoryError, match=r"^pkgs/api: matched as a service and as a shared package by \[tool\.wheelpipe\.workspace\] \(pkgs/\*, pkgs/\*\)$"
    ):
        load_repository(fake_root)


def test_two_services_with_one_name_are_an_error_naming_both(fake_root: Path) -> None:
    with_workspace(fake_root, 'services = ["apps/*", "workers/*"]\n')
    write_package(fake_root, "apps", "api", "api-server", service=True)
    write_package(fake_root, "workers", "api", "api-worker", service=True)
    with pytest.raises(RepositoryError, match=r"^workers/api and apps/api: two services named 'api'"):
        load_repository(fake_root)


@pytest.mark.parametrize("table", ['services = "apps/*"\n', 'shared = ["/abs/*"]\n', 'shared = ["../outside/*"]\n', "services = [1]\n"])
def test_a_malformed_workspace_table_is_one_line(fake_root: Path, table: str) -> None:
    with_workspace(fake_root, table)
    with pytest.raises(RepositoryError, match=r"^pyproject\.toml: \[tool\.wheelpipe\.workspace\] \w+ must be a list of glob patterns") as error:
        load_repository(fake_root)
    assert_one_line(error)


# --- [tool.wheelpipe.lock] ------------------------------------------------------------


def test_one_version_is_off_unless_the_lock_table_turns_it_on(fake_root: Path) -> None:
    write_package(fake_root, "services", "api", "api-server")
    assert load_repository(fake_root).one_version is False
    (fake_root / "pyproject.toml").write_text(TARGET_TABLE + '\n[tool.wheelpipe.lock]\none-version = true\nresolver = "pip-tools"\n')
    repo = load_repository(fake_root)
    assert (repo.one_version, repo.resolver) == (True, "pip-tools")


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("one_version = true", "pyproject.toml: [tool.wheelpipe.lock] has no key 'one_version' (known: resolver, one-version)"),
        ('one-version = "yes"', "pyproject.toml: [tool.wheelpipe.lock] one-version must be true or false, found 'yes'"),
        ("one-version = 1", "pyproject.toml: [tool.wheelpipe.lock] one-version must be true or false, found 1"),
        ("resolver = 5", 'pyproject.toml: [tool.wheelpipe.lock] resolver must be a string ("uv" or "pip-tools"), found 5'),
    ],
)
def test_a_misspelt_or_mistyped_lock_setting_is_one_line_naming_the_key(fake_root: Path, table: str, expected: str) -> None:
    write_package(fake_root, "services", "api", "api-server")
    (fake_root / "pyproject.toml").write_text(TARGET_TABLE + f"\n[tool.wheelpipe.lock]\n{table}\n")
    with pytest.raises(RepositoryError) as error:
        load_repository(fake_root)
    assert str(error.value) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('chart-registy = "oci://r.example.com/c"', "pyproject.toml: [tool.wheelpipe.release] has no key 'chart-registy' (known: version, chart-registry)"),
        (
            'chart-registry = "r.example.com/c"',
            "pyproject.toml: [tool.wheelpipe.release] chart-registry must be oci://<registry host>/<path> (e.g. oci://registry.example.com/team/charts), found 'r.example.com/c'",
        ),
    ],
)
def test_a_misspelt_or_malformed_release_setting_is_one_line_naming_the_key(fake_root: Path, line: str, expected: str) -> None:
    write_package(fake_root, "services", "api", "api-server")
    (fake_root / "pyproject.toml").write_text(TARGET_TABLE.replace('version = "1.0.0"\n', f'version = "1.0.0"\n{line}\n'))
    with pytest.raises(PipelineError) as error:
        load_repository(fake_root)
    assert str(error.value) == expected


def test_a_chart_registry_is_read_into_the_model(fake_root: Path) -> None:
    write_package(fake_root, "services", "api", "api-server")
    assert load_repository(fake_root).chart_registry is None
    (fake_root / "pyproject.toml").write_text(
        TARGET_TABLE.replace('version = "1.0.0"\n', 'version = "1.0.0"\nchart-registry = "oci://registry.example.com:5000/team/charts"\n')
    )
    assert load_repository(fake_root).chart_registry == ChartRegistry("registry.example.com:5000", "team/charts")


# --- a service declared at the root: the team's packages need no edit ----------------------


def test_a_service_table_at_the_root_declares_how_a_service_runs_without_editing_its_package(fake_root: Path) -> None:
    write_package(fake_root, "services", "api", "api-server", service=False)
    (fake_root / "pyproject.toml").write_text(
        (fake_root / "pyproject.toml").read_text()
        + '\n[tool.wheelpipe.services."services/api"]\nname = "edge"\ncommand = "gunicorn api.app:app"\nport = 8000\nhealth-path = "/ping"\n'
    )
    repo = load_repository(fake_root)
    assert list(repo.services) == ["edge"]
    assert repo.services["edge"].service == HttpService(("gunicorn", "api.app:app"), 8000, "PORT", "/ping")
    assert repo.notes == ["services/api: service 'edge', as [tool.wheelpipe.service] name says"]


@pytest.mark.parametrize(
    ("table", "says"),
    [
        (
            '[tool.wheelpipe.services."services/apx"]\nport = 8000\n',
            "pyproject.toml: [tool.wheelpipe.services] 'services/apx' is no service directory (the workspace's: services/api)",
        ),
        (
            '[tool.wheelpipe.services]\n"services/api" = 8000\n',
            'pyproject.toml: [tool.wheelpipe.services."services/api"] must be a table like [tool.wheelpipe.service], found 8000',
        ),
        (
            '[tool.wheelpipe.services."services/api"]\ncommand = "api-server"\nport = 0\n',
            'pyproject.toml [tool.wheelpipe.services."services/api"]: [tool.wheelpipe.service] port must be the port the service listens on (1-65535) for kind "http", found 0',
        ),
    ],
    ids=["a-directory-that-is-no-service", "not-a-table", "a-bad-port"],
)
def test_a_bad_root_service_table_is_one_line_naming_the_key(fake_root: Path, table: str, says: str) -> None:
    write_package(fake_root, "services", "api", "api-server", service=False)
    (fake_root / "pyproject.toml").write_text((fake_root / "pyproject.toml").read_text() + "\n" + table)
    with pytest.raises(RepositoryError) as raised:
        load_repository(fake_root)
    assert str(raised.value) == says


def test_a_service_declared_both_at_the_root_and_in_its_package_is_one_line(fake_root: Path) -> None:
    write_package(fake_root, "services", "api", "api-server")
    (fake_root / "pyproject.toml").write_text((fake_root / "pyproject.toml").read_text() + '\n[tool.wheelpipe.services."services/api"]\nport = 8000\n')
    with pytest.raises(RepositoryError) as raised:
        load_repository(fake_root)
    assert (
        str(raised.value)
        == 'pyproject.toml: [tool.wheelpipe.services."services/api"] and services/api/pyproject.toml\'s [tool.wheelpipe.service] both declare the service; keep one'
    )
