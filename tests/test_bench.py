"""`invoke bench`: the generated monorepos of --scaling and the verdicts on the targets.

Nothing here times anything: the figures the verdicts judge are given, and the generator is
checked by loading and locking what it makes (uv, a few seconds).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from monorepo import ROOT, git, invoke

from wheelpipe import bench
from wheelpipe.errors import PipelineError
from wheelpipe.lockfile import parse_pins
from wheelpipe.model import Repository
from wheelpipe.workspace import load_repository


@pytest.fixture
def generated(tmp_path: Path) -> Repository:
    return bench.generate_monorepo(load_repository(ROOT), tmp_path / "generated", 3)


def test_generated_monorepo_has_services_sharing_one_package_and_light_dependencies(generated: Repository) -> None:
    repo = load_repository(generated.root)
    assert list(repo.services) == ["svc01", "svc02", "svc03"]
    for index, (name, service) in enumerate(repo.services.items()):
        assert [p.name for p in repo.closure(name)] == [bench.SHARED_PACKAGE, service.name]
        assert repo.third_party_requirements(name) == sorted(bench.light_dependencies(index), key=str.lower)
    # Three services use every light dependency: the warm-up run of --scaling relies on it.
    used = {r for name in repo.services for r in repo.third_party_requirements(name)}
    assert used == set(bench.LIGHT_DEPENDENCIES)
    # Committed, nothing else: build-wheels dates wheels by commit and affected diffs against HEAD~1.
    assert git(generated.root, "status", "--porcelain") == ""
    assert not list((generated.root / "requirements").glob("svc*"))
    assert (generated.root / "tasks.py").is_file() and not (generated.root / "tests").exists()


@pytest.mark.network
def test_generated_monorepo_locks_every_service_with_uv(generated: Repository) -> None:
    result = invoke(generated.root, "lock")
    assert "(uv, for" in result.stderr
    for index, name in enumerate(["svc01", "svc02", "svc03"]):
        label = f"requirements/{name}.txt"
        pins = parse_pins(generated.root / label, label)
        assert set(pins) == {d.split(">=")[0] for d in bench.light_dependencies(index)}
        assert all(pin.hashes for pin in pins.values())


def test_bench_heavy_without_its_fixture_fails_before_timing_anything(repo_copy: Path) -> None:
    assert not (repo_copy / bench.HEAVY_FIXTURE).exists()  # a monorepo that is not wheelpipe's has none
    before = git(repo_copy, "status", "--porcelain", "--ignored")

    result = invoke(repo_copy, "bench", "--heavy", check=False)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: tests/packages/heavy_service/pyproject.toml: missing (the service `invoke bench --heavy` adds and locks)"
    ]
    assert "timing" not in result.stderr + result.stdout
    assert git(repo_copy, "status", "--porcelain", "--ignored") == before


@pytest.mark.parametrize(
    ("uv", "pip_tools", "met"),
    [(4.5, 90.0, True), (9.0, 90.0, True), (9.5, 90.0, False), (90.0, 90.0, False)],
)
def test_heavy_lock_check_target_is_uv_within_ten_percent_of_pip_tools(uv: float, pip_tools: float, met: bool) -> None:
    heavy = bench.LockComparison("heavy fixture", bench.LockTimes(cold=1.0, check=uv), bench.LockTimes(cold=1.0, check=pip_tools))

    [verdict] = bench.lock_verdicts(heavy)

    assert verdict.met is met
    assert str(verdict) == f"lock --check of the heavy fixture with uv <= 10% of pip-tools: {'met' if met else 'MISSED'} ({uv:.2f} s vs {pip_tools:.2f} s: {uv / pip_tools:.1%})"


@pytest.mark.parametrize(("seconds", "met"), [(0.3, True), (1.0, True), (1.01, False)])
def test_noop_build_wheels_target_is_one_second(seconds: float, met: bool) -> None:
    figures = bench.WheelhouseFigures(
        cold=20.0, warm=10.0, noop=seconds, noop_in_process=0.1, incremental=2.0, changed="services/order: x.py", naive_cold=40.0, naive_warm=30.0
    )
    points = [bench.ScalingPoint(n, lock=1.0, build_cold=5.0, build_noop=seconds, affected=0.2) for n in (3, 30)]

    verdicts = [bench.wheelhouse_verdicts(figures)[0], *bench.scaling_verdicts(points)]

    assert [v.met for v in verdicts] == [met] * 3
    assert [str(v).split(":")[0] for v in verdicts] == [
        "no-op build-wheels <= 1 s",
        "no-op build-wheels <= 1 s (3 generated services)",
        "no-op build-wheels <= 1 s (30 generated services)",
    ]


def test_lock_rows_print_uv_and_pip_tools_side_by_side_with_the_ratio() -> None:
    same = bench.LockComparison("repository", bench.LockTimes(2.0, 1.5), bench.LockTimes(40.0, 30.0))
    differing = bench.LockComparison("heavy fixture", bench.LockTimes(5.0, 4.5), bench.LockTimes(90.0, 90.0), ("requirements/dev.txt",))

    lines = bench.side_by_side(same.rows() + differing.rows()).splitlines()

    assert lines[0].split() == ["measure", "uv", "pip-tools", "uv/pip-tools", "note"]
    assert lines[2].startswith("repository: lock --upgrade, cold")
    assert lines[2].split()[-7:] == ["2.00", "40.00", "5.0%", "both", "wrote", "byte-identical", "locks"]
    assert lines[3].split()[-3:] == ["1.50", "30.00", "5.0%"]
    assert lines[4].endswith("differing locks: requirements/dev.txt") and "5.6%" in lines[4]
    assert lines[5].split()[-3:] == ["4.50", "90.00", "5.0%"]


def test_scaling_table_prints_seconds_per_size_and_growth_against_the_smallest() -> None:
    points = [
        bench.ScalingPoint(3, lock=2.0, build_cold=6.0, build_noop=0.5, affected=0.2),
        bench.ScalingPoint(10, lock=3.0, build_cold=13.0, build_noop=0.6, affected=0.2),
        bench.ScalingPoint(30, lock=8.0, build_cold=33.0, build_noop=0.9, affected=0.4),
    ]

    lines = bench.scaling_table(points).splitlines()

    assert lines[0].split()[2:] == ["3", "services", "10", "services", "30", "services", "per", "added", "service"]
    lock = next(line for line in lines if line.startswith("lock"))
    assert "2.00" in lock and "3.00 (x1.5)" in lock and "8.00 (x4.0)" in lock and lock.endswith("0.222 s")
    cold = next(line for line in lines if line.startswith("build-wheels, cold"))
    assert "13.00 (x2.2)" in cold and "33.00 (x5.5)" in cold and cold.endswith("1.000 s")
    assert lines[-1] == "(seconds; xN: against 3 services, warm caches)"


def test_the_deploy_row_renders_and_writes_manifests_and_chart_of_generated_services() -> None:
    figures = bench.deploy_figures(load_repository(ROOT), services=3)
    assert figures.services == 3
    assert min(figures.manifests, figures.chart, figures.in_process) > 0
    assert [row.measure for row in bench.deploy_rows(figures)] == [
        "manifests, 3 services (Deployment + Service each)",
        "chart, 3 services",
        "manifests and chart, 3 services, in-process",
    ]


@pytest.mark.parametrize(("seconds", "met"), [(0.4, True), (1.0, True), (1.2, False)])
def test_the_deploy_target_is_judged_on_the_pipeline_s_own_work(seconds: float, met: bool) -> None:
    (verdict,) = bench.deploy_verdicts(bench.DeployFigures(30, manifests=2.5, chart=2.5, in_process=seconds))
    assert verdict.met is met
    assert str(verdict).startswith(f"manifests and chart of 30 services <= 1 s: {'met' if met else 'MISSED'} (in-process {seconds:.2f} s")


def test_bench_in_a_tooling_venv_without_pypa_build_is_one_line_before_timing_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    # build is the bench extra, no run-time requirement: a monorepo's generated dev.in lacks it.
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "build" else found(name, *rest))
    with pytest.raises(PipelineError) as raised:
        bench.wheelhouse_figures(load_repository(ROOT))
    assert str(raised.value).startswith("invoke bench times `python -m build` as the naive way, and the tooling venv has no build: add build to requirements/dev.in")
