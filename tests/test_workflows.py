"""The GitHub workflows: valid against GitHub's schema (offline), and thin: every step calls an
invoke task, so no pipeline logic lives in YAML and CI runs what the README tells a newcomer."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from monorepo import ROOT, network_cut_prefix
from ruamel.yaml import YAML

WORKFLOWS = ROOT / ".github" / "workflows"
FILES = ["ci.yml", "release.yml"]
INVOKE = ".venv/bin/invoke "
# Actions a workflow may use besides invoke tasks: getting the code, the interpreter, and
# handing files from one job to the next.
ALLOWED_ACTIONS = {"actions/checkout", "actions/setup-python", "actions/upload-artifact", "actions/download-artifact"}
SHELL_LOGIC = re.compile(r"&&|\|\||;|\||`|\$\(|>|<")
# Provisioning a job may do besides invoke tasks (as setup-python does): a script of .ci/ that
# .ci/run runs too, so GitHub's machine is made as the local CI's is.
PROVISION = re.compile(r"^bash \.ci/([\w-]+)$")


def quick_start() -> list[str]:
    """The first fenced block under README.md's `## Quick start`: the setup line, then the test line."""
    section = ROOT.joinpath("README.md").read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [line.strip() for line in block.splitlines()[1:] if line.strip()]


def configured_base_image() -> str:
    """The default base image of `invoke image` (wheelpipe.tasks' image.base setting)."""
    found = re.search(r'"base":\s*"([^"]+)"', ROOT.joinpath("src", "wheelpipe", "tasks.py").read_text())
    assert found, "src/wheelpipe/tasks.py: no image.base default"
    return found.group(1)


def ci_run_lines() -> list[str]:
    """The command lines of .ci/run."""
    return [line.strip() for line in ROOT.joinpath(".ci", "run").read_text().splitlines() if line.strip() and not line.strip().startswith("#")]


def provisioning(line: str) -> bool:
    return line.startswith("docker pull ") or PROVISION.match(line) is not None


def load(name: str) -> dict[str, Any]:
    workflow: dict[str, Any] = YAML(typ="safe").load(WORKFLOWS.joinpath(name).read_text())
    return workflow


def run_lines(job: dict[str, Any]) -> list[str]:
    """Every command line of the job's `run:` steps, in order."""
    return [line.strip() for step in job["steps"] if "run" in step for line in step["run"].splitlines() if line.strip()]


def test_quick_start_has_the_setup_and_the_test_command() -> None:
    setup, tests = quick_start()
    assert setup.startswith("python3 -m venv .venv && ") and setup.endswith("invoke build-wheels")
    # tasks.py imports the pipeline from the venv: the setup installs it (and only it: its
    # dependencies come hash-checked from the tooling lock) before running a task.
    install_pipeline = " && .venv/bin/python -m pip install --no-deps --no-build-isolation -e . && "
    assert install_pipeline in setup and setup.index("requirements/dev.txt") < setup.index(install_pipeline) < setup.index("invoke build-wheels")
    assert tests == ".venv/bin/invoke test"


def test_every_workflow_is_valid_against_githubs_schema_offline() -> None:
    # check-jsonschema's builtin schemas are vendored in the package: with the network cut
    # (where this user may create a network namespace) it still validates. Every file in one
    # run: loading GitHub's schema is most of its time; a failure names the file.
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [path.name for path in files] == sorted(FILES)
    command = [*network_cut_prefix(), sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, files)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", FILES)
def test_every_step_calls_an_invoke_task(name: str) -> None:
    setup = quick_start()[0]
    for job_name, job in load(name)["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert step["uses"].split("@")[0] in ALLOWED_ACTIONS, f"{name}: {job_name}: {step['uses']}"
                continue
            for line in step["run"].splitlines():
                line = line.strip()
                if not line or line == setup:
                    continue
                where = f"{name}: {job_name}: {line!r}"
                if line.startswith(INVOKE):
                    assert not SHELL_LOGIC.search(line.split("#", 1)[0]), f"{where}: shell logic around a task"
                elif provisioned := PROVISION.match(line):
                    script = ROOT / ".ci" / provisioned[1]
                    assert script.is_file() and line in ci_run_lines(), f"{where}: not a script .ci/run runs"
                elif line.startswith("docker pull "):
                    # Provisioning, like setup-python: the base image `invoke image` builds on.
                    assert line == f"docker pull {configured_base_image()}", where
                elif "docker login" in line:
                    assert re.fullmatch(r'echo "\$\w+" \| docker login "\$\w+" --username "\$\w+" --password-stdin', line), where
                else:
                    assert line.startswith("echo ") and not SHELL_LOGIC.search(line), f"{where}: not an invoke task"


@pytest.mark.parametrize("name", FILES)
def test_every_job_sets_up_as_the_readme_says_before_its_tasks(name: str) -> None:
    setup = quick_start()[0]
    for job_name, job in load(name)["jobs"].items():
        lines = [line for line in run_lines(job) if not provisioning(line)]
        assert lines[0] == setup, f"{name}: {job_name} starts with {lines[0]!r}"
        checkout = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@"))
        # Wheels take SOURCE_DATE_EPOCH from history, and `affected` diffs against it.
        assert checkout["with"]["fetch-depth"] == 0, f"{name}: {job_name}"
        python = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
        assert python["with"]["python-version"] == "3.11", f"{name}: {job_name}"


def test_ci_check_job_runs_the_quick_start_the_lint_and_the_lock_gate() -> None:
    setup, tests = quick_start()
    workflow = load("ci.yml")
    assert set(workflow["on"]) == {"push", "pull_request"}
    lines = run_lines(workflow["jobs"]["check"])
    commands = [line for line in lines if not provisioning(line)]
    assert commands == [setup, ".venv/bin/invoke lint", ".venv/bin/invoke lock --check", tests]  # what .ci/run runs
    # Provisioned as .ci/run provisions: every script it runs, each before the step needing it.
    scripts = [line for line in ci_run_lines() if PROVISION.match(line)]
    assert scripts == ["bash .ci/docker-engine", "bash .ci/registry", "bash .ci/helm", "bash .ci/builders"]
    assert [line for line in lines if PROVISION.match(line)] == scripts
    assert lines.index("bash .ci/builders") > lines.index(setup)  # it runs the tooling venv's invoke
    assert lines.index("bash .ci/builders") < lines.index(tests)


def test_ci_builds_the_images_of_the_affected_services_only() -> None:
    jobs = load("ci.yml")["jobs"]
    step = next(step for step in jobs["affected"]["steps"] if step.get("id") == "affected")
    assert step["run"].startswith(".venv/bin/invoke affected --since ")
    assert "--github-output" in step["run"] and "--all-if-unknown" in step["run"]
    assert jobs["affected"]["outputs"]["services"] == "${{ steps.affected.outputs.services }}"
    images = jobs["images"]
    assert images["needs"] == "affected"
    assert images["if"] == "needs.affected.outputs.services != '[]'"
    assert images["strategy"]["matrix"]["service"] == "${{ fromJSON(needs.affected.outputs.services) }}"
    assert '.venv/bin/invoke image --service "$SERVICE"' in run_lines(images)


def test_release_workflow_on_tags_with_guarded_push_and_publish() -> None:
    workflow = load("release.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    jobs = workflow["jobs"]
    assert ".venv/bin/invoke release" in [line.split("#")[0].strip() for line in run_lines(jobs["release"])]
    assert any(step.get("uses", "").startswith("actions/upload-artifact@") and step["with"]["path"] == "dist/" for step in jobs["release"]["steps"])
    assert jobs["release"]["outputs"]["services"] == "${{ steps.services.outputs.services }}"
    assert jobs["images"]["needs"] == "release" and jobs["publish"]["needs"] == "release"
    assert jobs["images"]["strategy"]["matrix"]["service"] == "${{ fromJSON(needs.release.outputs.services) }}"

    # Secrets cannot appear in `if:`: each guarded step tests the env the job maps them to.
    for job_name, guarded, secrets in (
        ("images", "--push", ["REGISTRY_PREFIX", "REGISTRY_USERNAME", "REGISTRY_PASSWORD"]),
        ("images", "docker login", ["REGISTRY_PREFIX", "REGISTRY_USERNAME", "REGISTRY_PASSWORD"]),
        ("publish", ".venv/bin/invoke publish", ["TWINE_USERNAME", "TWINE_PASSWORD", "TWINE_REPOSITORY_URL"]),
    ):
        job = jobs[job_name]
        step = next(step for step in job["steps"] if guarded in step.get("run", ""))
        for secret in secrets:
            assert job["env"][secret] == f"${{{{ secrets.{secret} }}}}"
            assert f"env.{secret} != ''" in step["if"], f"{job_name}: {guarded}"
    # The unguarded build of every image still runs without any secret.
    assert any(step.get("run") == '.venv/bin/invoke image --service "$SERVICE"' and "if" not in step for step in jobs["images"]["steps"])


# A test file or fixture the README names, as a path from the repository's root: `tests/...`,
# `tests/packages/<scenario>`, or a package's own `<dir>/tests/test_x.py`.
NAMED_TEST_PATH = re.compile(r"`((?:[\w.-]+/)*tests/(?:packages/[\w.-]+|(?:[\w.-]+/)*test_\w+\.py))[^`]*`")


def test_every_test_file_and_fixture_the_readme_names_exists() -> None:
    named = sorted(set(NAMED_TEST_PATH.findall(ROOT.joinpath("README.md").read_text())))
    assert any(path.endswith(".py") for path in named), "README.md names no test file: the pattern no longer matches how it names them"
    missing = [path for path in named if not ROOT.joinpath(path).exists()]
    assert not missing, f"README.md names test files or fixtures that do not exist: {', '.join(missing)}"
