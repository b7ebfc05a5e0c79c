"""`invoke bench`: the pipeline's speed measured against the naive way, in the same run.

Each figure is the wall time of a real command in a fresh copy of the repository. "Cold"
means empty caches: the command runs with XDG_CACHE_HOME pointing at an empty directory,
which pip, pip-tools, uv and the pipeline's own download cache all honour. PIP_CACHE_DIR or
UV_CACHE_DIR could not do it: the pipeline runs every tool without PIP_*/UV_* variables.
The two sides of a comparison get caches of their own, in the same state.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import emulation
from .console import quiet, report
from .docker import Docker
from .errors import PipelineError, RepositoryError, ToolError
from .image import ImageSettings, build_image
from .model import HttpService, Repository
from .requirements import REQUIREMENTS_DIR, TOOLING, TOOLING_LOCK, lock_file
from .tools import CompletedProcess, run
from .wheelhouse import STORE, Wheelhouse, build_wheels
from .workspace import load_repository

# The targets.
NOOP_SECONDS = 1.0  # build-wheels with nothing changed
DEPLOY_SECONDS = 1.0  # manifests and chart of DEPLOY_SERVICES generated services
DEPLOY_SERVICES = 30
UV_CHECK_SHARE = 0.10  # lock --check of the heavy fixture: uv's time as a share of pip-tools'

HEAVY_FIXTURE = "tests/packages/heavy_service"  # added to a copy as services/heavy by --heavy
HEAVY_SERVICE = "heavy"
COMPARED_RESOLVERS = ("uv", "pip-tools")

SCALING_SIZES = (3, 10, 30)  # services in each generated monorepo of --scaling
# Pure-Python, dependency-free and tiny, so the figures are the pipeline's cost, not pip's.
LIGHT_DEPENDENCIES = ("attrs>=23.1", "idna>=3.4", "six>=1.16")
SHARED_PACKAGE = "bench-common"
# What a generated monorepo takes from this one: the pipeline and its tooling lock, no packages.
PIPELINE_FILES = (".gitignore", "pyproject.toml", "tasks.py", "src/", lock_file(TOOLING, "in"), TOOLING_LOCK)
_GIT_IDENTITY = ("-c", "user.name=wheelpipe bench", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false")


@dataclass
class Row:
    measure: str
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    """One target of the issue, judged on this run's figures."""

    target: str
    met: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.target}: {'met' if self.met else 'MISSED'} ({self.detail})"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def clone(repo: Repository, destination: Path) -> Repository:
    run(["git", "clone", "-q", "--no-hardlinks", repo.root, destination], what="cloning the repository")
    return load_repository(destination)


def working_copy(repo: Repository, destination: Path) -> Repository:
    """The repository as it stands, committed in a git repository of its own at `destination`:
    the files a clone of HEAD holds plus uncommitted work, ignored files left out. A clone
    would leave out the very change a developer runs the benchmark to measure."""
    _copy_files(repo.root, destination, _project_files(repo.root))
    _commit(destination, "bench: a copy of the repository", init=True)
    return load_repository(destination)


def _project_files(root: Path) -> list[str]:
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], what="listing the repository's files", cwd=root)
    # A tracked file deleted in the working tree is listed too, and is not copied.
    return sorted({name for name in listed.stdout.split("\0") if name and ((root / name).is_file() or (root / name).is_symlink())})


def _copy_files(source: Path, destination: Path, names: Sequence[str]) -> None:
    for name in names:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target, follow_symlinks=False)


def _commit(root: Path, message: str, *, init: bool = False) -> None:
    if init:
        run(["git", "init", "-q", "-b", "main"], what=f"git init in {root}", cwd=root)
    run(["git", "add", "-A"], what=f"git add in {root}", cwd=root)
    run(["git", *_GIT_IDENTITY, "commit", "-q", "--allow-empty", "-m", message], what=f"git commit in {root}", cwd=root)


def invoke(root: Path, *args: str, env: dict[str, str] | None = None) -> CompletedProcess[str]:
    return run([sys.executable, "-m", "invoke", *args], what=f"invoke {' '.join(args)} in {root}", cwd=root, env=env)


def empty_cache(directory: Path) -> dict[str, str]:
    """The environment that gives a command the cache in `directory` (created empty)."""
    directory.mkdir(parents=True)
    return {"XDG_CACHE_HOME": str(directory)}


def one_line_change(repo: Repository, name: str | None = None) -> str:
    """Append a line to the first module of a service (default: the first), as a developer's edit would."""
    service = repo.service(name) if name else next(iter(repo.services.values()))
    module = sorted((service.path / "src").rglob("*.py"))[0]
    with module.open("a") as stream:
        stream.write("# bench: a one-line change\n")
    return f"{service.directory}: {module.name}"


# -- build-wheels against the naive way ---------------------------------------------------


def require_build() -> None:
    """The naive way runs pypa/build, which the pipeline itself never needs (the bench extra)."""
    if importlib.util.find_spec("build") is None:
        msg = "invoke bench times `python -m build` as the naive way, and the tooling venv has no build: add build to requirements/dev.in and run invoke lock (or install wheelpipe[bench])"
        raise PipelineError(msg)


def naive_wheelhouse(repo: Repository, outdir: Path, env: dict[str, str]) -> None:
    """What a bare pip-tools setup does: `python -m build` per package, `pip wheel -r` per service."""
    for package in repo.packages.values():
        run([sys.executable, "-m", "build", "--outdir", outdir, package.path], what=f"naive build of {package.label}", env=env)
    for service in repo.services:
        run(
            [sys.executable, "-m", "pip", "wheel", "--require-hashes", "--no-deps", "-w", outdir, "-r", repo.lock_path(service)],
            what=f"naive pip wheel for {service}",
            env=env,
        )


@dataclass(frozen=True)
class WheelhouseFigures:
    cold: float  # no wheelhouse, empty caches
    warm: float  # --clean, the caches the cold run filled
    noop: float
    noop_in_process: float  # the no-op without the interpreter's and invoke's start-up
    incremental: float
    changed: str  # where the one-line change went
    naive_cold: float
    naive_warm: float


def wheelhouse_figures(repo: Repository) -> WheelhouseFigures:
    require_build()  # before any timing: a missing tool is one line, not a failed naive run
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-") as tmp:
        ours_cache = empty_cache(Path(tmp, "cache-ours"))
        naive_cache = empty_cache(Path(tmp, "cache-naive"))
        ours = working_copy(repo, Path(tmp, "ours"))
        report.step("timing build-wheels: cold, warm cache, no-op, after a one-line change")
        cold = timed(lambda: invoke(ours.root, "build-wheels", env=ours_cache))
        warm = timed(lambda: invoke(ours.root, "build-wheels", "--clean", env=ours_cache))
        noop = timed(lambda: invoke(ours.root, "build-wheels", env=ours_cache))
        with quiet():
            noop_in_process = timed(lambda: build_wheels(load_repository(ours.root)))
        changed = one_line_change(ours)
        incremental = timed(lambda: invoke(ours.root, "build-wheels", env=ours_cache))
        report.step("timing the naive way: python -m build per package, pip wheel -r per service")
        naive_repo = working_copy(repo, Path(tmp, "naive"))
        naive = timed(lambda: naive_wheelhouse(naive_repo, Path(tmp, "naive-wheels"), naive_cache))
        naive_warm = timed(lambda: naive_wheelhouse(naive_repo, Path(tmp, "naive-wheels-2"), naive_cache))
    return WheelhouseFigures(cold, warm, noop, noop_in_process, incremental, changed, naive, naive_warm)


def wheelhouse_rows(f: WheelhouseFigures) -> list[Row]:
    return [
        Row("build-wheels, cold (no wheelhouse, empty caches)", f.cold, f"naive: {f.naive_cold:.2f} s ({f.naive_cold / f.cold:.1f}x slower)"),
        Row("build-wheels --clean, warm caches", f.warm, f"naive: {f.naive_warm:.2f} s ({f.naive_warm / f.warm:.1f}x slower)"),
        Row("build-wheels, nothing changed", f.noop, f"{f.noop / f.cold:.1%} of cold, {f.noop / f.warm:.1%} of warm"),
        Row("build-wheels, nothing changed, in-process", f.noop_in_process, "the pipeline's own work, without start-up"),
        Row("build-wheels, one-line change", f.incremental, f.changed),
        Row("naive, cold: build per package + pip wheel -r per service", f.naive_cold, "same copy, its own empty caches"),
        Row("naive, warm caches", f.naive_warm, ""),
    ]


def noop_verdict(seconds: float, where: str = "") -> Verdict:
    return Verdict(f"no-op build-wheels <= {NOOP_SECONDS:g} s{where}", seconds <= NOOP_SECONDS, f"{seconds:.2f} s")


def wheelhouse_verdicts(f: WheelhouseFigures) -> list[Verdict]:
    return [
        noop_verdict(f.noop),
        Verdict("no-op <= 5% of cold", f.noop <= 0.05 * f.cold, f"{f.noop / f.cold:.1%}; in-process {f.noop_in_process / f.cold:.1%}"),
        Verdict("cold faster than naive", f.cold < f.naive_cold, f"{f.cold:.2f} s vs {f.naive_cold:.2f} s; warm {f.warm:.2f} s vs {f.naive_warm:.2f} s"),
    ]


def table(rows: list[Row]) -> str:
    width = max(len(r.measure) for r in rows)
    lines = [f"{'measure':<{width}}  {'seconds':>8}  note", f"{'-' * width}  {'-' * 8}  {'-' * 4}"]
    lines += [f"{r.measure:<{width}}  {r.seconds:>8.2f}  {r.note}" for r in rows]
    return "\n".join(lines)


# -- invoke lock: uv against pip-tools ----------------------------------------------------


@dataclass(frozen=True)
class LockTimes:
    """One resolver's `invoke lock` on one repository."""

    cold: float  # lock --upgrade (every pin resolved afresh), empty caches
    check: float  # lock --check right after, with the caches the cold run filled


@dataclass(frozen=True)
class LockComparison:
    subject: str
    uv: LockTimes
    pip_tools: LockTimes
    differing: tuple[str, ...] = ()  # lock files the two resolvers wrote differently

    def rows(self) -> list[SideBySide]:
        same = f"differing locks: {', '.join(self.differing)}" if self.differing else "both wrote byte-identical locks"
        return [
            SideBySide(f"{self.subject}: lock --upgrade, cold (empty caches)", self.uv.cold, self.pip_tools.cold, same),
            SideBySide(f"{self.subject}: lock --check (caches warm)", self.uv.check, self.pip_tools.check),
        ]


@dataclass(frozen=True)
class SideBySide:
    measure: str
    uv: float
    pip_tools: float
    note: str = ""

    @property
    def ratio(self) -> float:
        """uv's time as a share of pip-tools'."""
        return self.uv / self.pip_tools


def lock_comparison(prepared: Repository, subject: str, workdir: Path) -> LockComparison:
    """`invoke lock --upgrade` cold, then `invoke lock --check`, with each resolver in a copy of its own.

    --upgrade so that the cold run resolves every pin from nothing rather than keeping those of
    the locks it finds, and so that a service added without a lock is locked consistently with
    the others even when their pins have fallen behind the index.
    """
    times = {}
    for name in COMPARED_RESOLVERS:
        copy = workdir / name
        shutil.copytree(prepared.root, copy, symlinks=True)
        env = empty_cache(workdir / f"cache-{name}")
        report.step(f"timing `invoke lock` on {subject} with {name}: cold, then --check")
        cold = timed(functools.partial(invoke, copy, "lock", "--upgrade", "--resolver", name, env=env))
        check = timed(functools.partial(invoke, copy, "lock", "--check", "--resolver", name, env=env))
        times[name] = LockTimes(cold, check)
    return LockComparison(subject, times["uv"], times["pip-tools"], _differing_locks(workdir / "uv", workdir / "pip-tools"))


def _differing_locks(one: Path, other: Path) -> tuple[str, ...]:
    names = {p.relative_to(root).as_posix() for root in (one, other) for p in (root / REQUIREMENTS_DIR).glob("*.txt")}
    return tuple(sorted(n for n in names if not ((one / n).is_file() and (other / n).is_file() and (one / n).read_bytes() == (other / n).read_bytes())))


def repository_lock_comparison(repo: Repository) -> LockComparison:
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-lock-") as tmp:
        prepared = working_copy(repo, Path(tmp, "source"))
        return lock_comparison(prepared, "repository", Path(tmp))


def heavy_fixture(repo: Repository) -> Path:
    """The heavy fixture's directory; checked before anything is timed, not minutes later."""
    return _fixture(repo, HEAVY_FIXTURE, "the service `invoke bench --heavy` adds and locks")


def _fixture(repo: Repository, relative: str, what: str) -> Path:
    """A fixture's directory in the repository, which a flag of the benchmark needs (`what`)."""
    fixture = repo.root / relative
    if not (fixture / "pyproject.toml").is_file():
        msg = f"{relative}/pyproject.toml: missing ({what})"
        raise RepositoryError(msg)
    return fixture


def with_heavy_service(repo: Repository, destination: Path) -> Repository:
    """A copy of the repository with the heavy fixture added as services/heavy, committed, not locked."""
    fixture = heavy_fixture(repo)
    copy = working_copy(repo, destination)
    shutil.copytree(fixture, copy.root / "services" / HEAVY_SERVICE, ignore=shutil.ignore_patterns("__pycache__"))
    _commit(copy.root, f"bench: {HEAVY_FIXTURE} as services/{HEAVY_SERVICE}")
    return load_repository(copy.root)


def heavy_lock_comparison(repo: Repository) -> LockComparison:
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-heavy-") as tmp:
        prepared = with_heavy_service(repo, Path(tmp, "source"))
        return lock_comparison(prepared, "heavy fixture", Path(tmp))


def lock_verdicts(heavy: LockComparison) -> list[Verdict]:
    uv, pip_tools = heavy.uv.check, heavy.pip_tools.check
    return [
        Verdict(
            f"lock --check of the heavy fixture with uv <= {UV_CHECK_SHARE:.0%} of pip-tools",
            uv <= UV_CHECK_SHARE * pip_tools,
            f"{uv:.2f} s vs {pip_tools:.2f} s: {uv / pip_tools:.1%}",
        )
    ]


def side_by_side(rows: list[SideBySide]) -> str:
    width = max(len(r.measure) for r in rows)
    lines = [f"{'measure':<{width}}  {'uv':>8}  {'pip-tools':>9}  {'uv/pip-tools':>12}  note", f"{'-' * width}  {'-' * 8}  {'-' * 9}  {'-' * 12}  {'-' * 4}"]
    lines += [f"{r.measure:<{width}}  {r.uv:>8.2f}  {r.pip_tools:>9.2f}  {r.ratio:>12.1%}  {r.note}".rstrip() for r in rows]
    lines.append("(seconds; uv/pip-tools: uv's time as a share of pip-tools')")
    return "\n".join(lines)


# -- scaling: generated monorepos of growing size -----------------------------------------


def service_name(index: int) -> str:
    return f"svc{index + 1:02d}"


def light_dependencies(index: int) -> list[str]:
    """One light dependency for every service, a second for every other one."""
    chosen = [LIGHT_DEPENDENCIES[index % len(LIGHT_DEPENDENCIES)]]
    if index % 2:
        chosen.append(LIGHT_DEPENDENCIES[(index + 1) % len(LIGHT_DEPENDENCIES)])
    return chosen


_SHARED_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.26"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["src/{module}"]
"""

_SERVICE_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.26"]
build-backend = "hatchling.build"

[project]
name = "bench-{service}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [{dependencies}]

[project.scripts]
bench-{service} = "bench_{service}:main"

[tool.hatch.build.targets.wheel]
packages = ["src/bench_{service}"]

[tool.wheelpipe.service]
command = "bench-{service}"
port-env = "BENCH_{service_upper}_PORT"
default-port = {port}

[tool.wheelpipe.sources]
{shared} = {{ workspace = true }}
"""

_SERVICE_MODULE = '''\
"""Generated by `invoke bench --scaling`."""

from {shared_module} import greeting


def main() -> int:
    print(greeting("{service}"))
    return 0
'''


def generate_monorepo(source: Repository, destination: Path, services: int) -> Repository:
    """A monorepo of `services` generated services and one shared package they all use, run by
    this repository's pipeline (and its tooling lock), committed, not locked yet."""
    keep = [name for name in _project_files(source.root) if name.startswith(PIPELINE_FILES)]
    _copy_files(source.root, destination, keep)
    shared_module = SHARED_PACKAGE.replace("-", "_")
    shared = destination / "shared" / "common"
    (shared / "src" / shared_module).mkdir(parents=True)
    (shared / "pyproject.toml").write_text(_SHARED_PYPROJECT.format(name=SHARED_PACKAGE, module=shared_module))
    (shared / "src" / shared_module / "__init__.py").write_text('def greeting(name: str) -> str:\n    return f"hello from {name}"\n')
    for index in range(services):
        name = service_name(index)
        directory = destination / "services" / name
        (directory / "src" / f"bench_{name}").mkdir(parents=True)
        dependencies = ", ".join(f'"{d}"' for d in [SHARED_PACKAGE, *light_dependencies(index)])
        (directory / "pyproject.toml").write_text(
            _SERVICE_PYPROJECT.format(service=name, service_upper=name.upper(), dependencies=dependencies, port=9000 + index, shared=SHARED_PACKAGE)
        )
        (directory / "src" / f"bench_{name}" / "__init__.py").write_text(_SERVICE_MODULE.format(service=name, shared_module=shared_module))
    _commit(destination, f"bench: a generated monorepo of {services} services", init=True)
    return load_repository(destination)


def change_shared_package(repo: Repository) -> None:
    """A one-line change in the package every service uses: the most `affected` can find."""
    module = repo.packages[SHARED_PACKAGE].path / "src" / SHARED_PACKAGE.replace("-", "_") / "__init__.py"
    with module.open("a") as stream:
        stream.write("# bench: a one-line change\n")


@dataclass(frozen=True)
class ScalingPoint:
    services: int
    lock: float  # no locks yet, warm caches
    build_cold: float  # no wheelhouse, warm caches
    build_noop: float
    affected: float  # --since HEAD~1, after a change in the shared package


def scaling_points(repo: Repository, sizes: Sequence[int] = SCALING_SIZES) -> list[ScalingPoint]:
    """Lock, build-wheels and affected on generated monorepos of each size.

    The caches are warmed first by an untimed run on a monorepo that uses every light
    dependency, so that the sizes differ in the pipeline's work only, not in downloads.
    """
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-scaling-") as tmp:
        env = empty_cache(Path(tmp, "cache"))
        report.step("warming the caches on a small generated monorepo (not timed)")
        warm = generate_monorepo(repo, Path(tmp, "warm-up"), len(LIGHT_DEPENDENCIES))
        invoke(warm.root, "lock", env=env)
        _commit(warm.root, "bench: locks")
        invoke(warm.root, "build-wheels", env=env)
        return [_scaling_point(repo, Path(tmp, f"{size}-services"), size, env) for size in sizes]


def _scaling_point(source: Repository, destination: Path, size: int, env: dict[str, str]) -> ScalingPoint:
    generated = generate_monorepo(source, destination, size)
    root = generated.root
    report.step(f"timing a generated monorepo of {size} services: lock, build-wheels cold and no-op, affected")
    lock = timed(lambda: invoke(root, "lock", env=env))
    _commit(root, "bench: locks")
    change_shared_package(generated)
    _commit(root, "bench: a one-line change in the shared package")
    cold = timed(lambda: invoke(root, "build-wheels", env=env))
    noop = timed(lambda: invoke(root, "build-wheels", env=env))
    listed: list[str] = []
    affected = timed(lambda: listed.extend(invoke(root, "affected", "--since", "HEAD~1", env=env).stdout.split()))
    if len(listed) != size:
        msg = f"invoke affected --since HEAD~1 in {root}: expected all {size} services after a change in {SHARED_PACKAGE}, found {len(listed)}"
        raise ToolError(msg)
    return ScalingPoint(size, lock, cold, noop, affected)


SCALING_MEASURES = {
    "lock (no locks yet)": "lock",
    "build-wheels, cold (no wheelhouse)": "build_cold",
    "build-wheels, nothing changed": "build_noop",
    "affected --since HEAD~1": "affected",
}


def scaling_table(points: list[ScalingPoint]) -> str:
    """Seconds per size, each with its growth against the smallest size, and the cost of one more service."""
    first, last = points[0], points[-1]
    width = max(len(m) for m in SCALING_MEASURES)
    header = [f"{'generated monorepo':<{width}}", *(f"{f'{p.services} services':>15}" for p in points), f"{'per added service':>17}"]
    lines = ["  ".join(header), "  ".join(["-" * width, *("-" * 15 for _ in points), "-" * 17])]
    for measure, field in SCALING_MEASURES.items():
        base = getattr(first, field)
        cells = [f"{base:>15.2f}"]
        cells += [f"{f'{getattr(p, field):.2f} (x{getattr(p, field) / base:.1f})':>15}" for p in points[1:]]
        slope = (getattr(last, field) - base) / (last.services - first.services) if last.services != first.services else 0.0
        lines.append("  ".join([f"{measure:<{width}}", *cells, f"{slope:>15.3f} s"]))
    lines.append(f"(seconds; xN: against {first.services} services, warm caches)")
    return "\n".join(lines)


def scaling_verdicts(points: list[ScalingPoint]) -> list[Verdict]:
    return [noop_verdict(p.build_noop, f" ({p.services} generated services)") for p in points]


# The environment the deploy row renders: a registry name that resolves nowhere, since
# rendering asks no registry (only --check does).
_DEPLOY_TABLE = """
[tool.wheelpipe.deploy.bench]
namespace = "bench"
registry = "registry.example.com/bench/"
"""


@dataclass(frozen=True)
class DeployFigures:
    services: int
    manifests: float  # `invoke manifests`, no manifest written yet
    chart: float  # `invoke chart`
    in_process: float  # both renderings and writes, without interpreter start-up


def deploy_figures(repo: Repository, services: int = DEPLOY_SERVICES) -> DeployFigures:
    """`invoke manifests` and `invoke chart` on a generated monorepo of `services` services.

    Its images are never built: the push record holds, for each service, what `invoke image
    --push` would record (a digest made from the service's name, the image's user), so only
    the pipeline's own rendering and writing is timed."""
    from .deploy import Pushed, record_pushed

    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-deploy-") as tmp:
        generated = generate_monorepo(repo, Path(tmp, "deploy"), services)
        root = generated.root
        with (root / "pyproject.toml").open("a") as stream:
            stream.write(_DEPLOY_TABLE)
        for name, package in generated.services.items():
            digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
            record_pushed(root / STORE, Pushed(f"registry.example.com/bench/{name}:{package.version}", digest, "10001:10001", "bench"))
        report.step(f"timing manifests and chart of {services} generated services")
        manifests_seconds = timed(lambda: invoke(root, "manifests"))
        chart_seconds = timed(lambda: invoke(root, "chart"))
        shutil.rmtree(root / "deploy")
        in_process = timed(lambda: _render_deploy(root))
    return DeployFigures(services, manifests_seconds, chart_seconds, in_process)


def _render_deploy(root: Path) -> None:
    from . import chart, manifests

    repo = load_repository(root)
    env = manifests.environment(repo, None)
    rendered = manifests.render(repo, env, list(repo.services))
    manifests.write(repo, rendered)
    chart.write(repo, chart.chart_files(repo, env, rendered))


def deploy_rows(f: DeployFigures) -> list[Row]:
    return [
        Row(f"manifests, {f.services} services (Deployment + Service each)", f.manifests, "invoke manifests, interpreter start-up included"),
        Row(f"chart, {f.services} services", f.chart, "invoke chart"),
        Row(f"manifests and chart, {f.services} services, in-process", f.in_process, "the pipeline's own work, without start-up"),
    ]


def deploy_verdicts(f: DeployFigures) -> list[Verdict]:
    return [Verdict(f"manifests and chart of {f.services} services <= {DEPLOY_SECONDS:g} s", f.in_process <= DEPLOY_SECONDS, f"in-process {f.in_process:.2f} s; as commands {f.manifests:.2f} s + {f.chart:.2f} s")]


# The naive way to containerize a service: one stage, the whole repository copied in,
# pip resolving and building from the index inside the image.
NAIVE_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /src
COPY . /src
ARG SERVICE
ARG PACKAGES
# The build host's CA bundle, so pip trusts whatever TLS proxy stands before the index.
ENV PIP_CERT=/src/host-ca.pem
RUN python3 -m venv /venv \\
    && /venv/bin/pip install --no-cache-dir -r requirements/${SERVICE}.txt \\
    && /venv/bin/pip install --no-cache-dir --no-deps ${PACKAGES}
ENV PATH=/venv/bin:$PATH
"""


def host_ca_bundle() -> Path:
    """The CA bundle this host's pip trusts (PIP_CERT, else the system bundle)."""
    configured = os.environ.get("PIP_CERT") or ssl.get_default_verify_paths().cafile
    for candidate in (configured, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    msg = "no CA bundle found for the naive image's pip (set PIP_CERT)"
    raise ToolError(msg)


def _docker_size(docker: Docker, reference: str) -> int:
    return int(docker.run("image", "inspect", "-f", "{{.Size}}", reference, what="image size").stdout)


def _installed_size(docker: Docker, reference: str) -> int:
    result = docker.run("run", "--rm", "--network", "none", "--entrypoint", "du", reference, "-sb", "/srv/venv", what="du of the venv")
    return int(result.stdout.split()[0])


def install_step_seconds(house: Wheelhouse, service: str, workdir: Path) -> tuple[float, float]:
    """The image's install step (uv taken from the wheelhouse's installer wheel, run with the
    Dockerfile's flags into a venv made --without-pip) next to a bare `uv pip install` of the
    same wheels doing the same work (bytecode compiled, no cache)."""
    manifest = house.install_manifest(service, house.targets[0])
    house.unpack_installer(workdir, house.targets[0])
    run([sys.executable, "-m", "venv", "--without-pip", workdir / "image-env"], what="venv")
    ours = timed(
        lambda: run(
            [workdir / "uv", "pip", "install", "--no-config", "--python", workdir / "image-env/bin/python", "--offline", "--no-index",
             "--no-cache", "--require-hashes", "--only-binary", ":all:", "--no-deps", "--compile-bytecode", "--link-mode", "copy",
             "--find-links", house.path, "-r", manifest],
            what="uv pip install, as the image's install step",
            env={"SOURCE_DATE_EPOCH": "315532800", "UV_NO_INSTALLER_METADATA": "1"},
        )
    )
    uv = [sys.executable, "-m", "uv"]
    run([*uv, "venv", "-q", workdir / "uv-env"], what="uv venv")
    uv_seconds = timed(
        lambda: run(
            [*uv, "pip", "install", "--python", workdir / "uv-env/bin/python", "--offline", "--no-cache", "--no-index",
             "--require-hashes", "--no-deps", "--compile-bytecode", "--find-links", house.path, "-r", manifest],
            what="uv pip install",
        )
    )
    return ours, uv_seconds


def image_rows(repo: Repository, settings: ImageSettings) -> tuple[list[Row], dict[str, float]]:
    # An http service: the naive image below serves like one.
    service = next(name for name, package in repo.services.items() if isinstance(package.service, HttpService))
    docker = settings.docker
    created: list[str] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-image-") as tmp:
        ours = clone(repo, Path(tmp, "ours"))
        bench_settings = ImageSettings(prefix="wheelpipe-bench/", base=settings.base, docker=docker)
        with quiet():
            build_wheels(ours)
        report.step(f"timing `invoke image --service {service}`: cold, nothing changed, after a one-line change")
        with quiet():
            figures["cold"] = timed(lambda: created.append(build_image(ours, bench_settings, service, no_cache=True)))
            figures["noop"] = timed(lambda: build_image(ours, bench_settings, service))
            one_line_change(ours, service)
            figures["change"] = timed(lambda: build_image(ours, bench_settings, service))
        tag = created[0]
        base_size = _docker_size(docker, settings.base)
        figures["added"] = _docker_size(docker, tag) - base_size
        figures["installed"] = _installed_size(docker, tag)
        with quiet():
            house = build_wheels(ours).wheelhouse
        figures["install"], figures["uv"] = install_step_seconds(house, service, Path(tmp))

        report.step("timing the naive single-stage image: repository copied in, pip install from the index")
        naive = clone(repo, Path(tmp, "naive"))
        (naive.root / "Dockerfile.naive").write_text(NAIVE_DOCKERFILE)
        shutil.copy(host_ca_bundle(), naive.root / "host-ca.pem")
        packages = " ".join(f"./{p.directory}" for p in naive.closure(service))
        naive_tag = f"wheelpipe-bench/naive-{service}:latest"

        def naive_build(*extra: str) -> None:
            docker.run("build", "--force-rm", *extra, "-f", str(naive.root / "Dockerfile.naive"), "-t", naive_tag,
                       "--build-arg", f"BASE_IMAGE={settings.base}", "--build-arg", f"SERVICE={service}",
                       "--build-arg", f"PACKAGES={packages}", str(naive.root), what="naive docker build")

        figures["naive_cold"] = timed(lambda: naive_build("--no-cache"))
        one_line_change(naive, service)
        figures["naive_change"] = timed(naive_build)
        figures["naive_added"] = _docker_size(docker, naive_tag) - base_size
        created.append(naive_tag)
        for reference in created:
            docker.run("rmi", reference, what=f"removing {reference}")
    mb = 1e6
    rows = [
        Row(f"image {service}, cold (no layer cache)", figures["cold"], "wheelhouse already built"),
        Row(f"image {service}, nothing changed", figures["noop"], ""),
        Row(f"image {service}, one-line change", figures["change"], f"{figures['change'] / figures['cold']:.0%} of cold"),
        Row("install step: uv from the wheelhouse (Dockerfile flags)", figures["install"], "into a fresh venv, bytecode compiled"),
        Row("install step floor: uv pip install", figures["uv"], "same wheels, --compile-bytecode, no cache"),
        Row(f"naive image {service}, cold", figures["naive_cold"], "single stage, pip from the index"),
        Row(f"naive image {service}, one-line change", figures["naive_change"], f"{figures['naive_change'] / figures['cold']:.0%} of our cold"),
    ]
    sizes = [
        Row("image size minus base (MB)", figures["added"] / mb, f"{figures['added'] / figures['installed']:.2f}x the installed venv"),
        Row("installed venv /srv/venv (MB)", figures["installed"] / mb, "du -sb in the image"),
        Row("naive image size minus base (MB)", figures["naive_added"] / mb, f"{figures['naive_added'] / figures['added']:.1f}x ours"),
    ]
    return rows + sizes, figures


def image_verdicts(figures: dict[str, float]) -> list[Verdict]:
    return [
        Verdict("rebuild after a code change <= 25% of cold", figures["change"] <= 0.25 * figures["cold"], f"{figures['change'] / figures['cold']:.0%}"),
        Verdict("image size minus base <= 1.1x installed", figures["added"] <= 1.1 * figures["installed"], f"{figures['added'] / figures['installed']:.2f}x"),
        Verdict("smaller than naive", figures["added"] < figures["naive_added"], f"{figures['added'] / 1e6:.1f} MB vs {figures['naive_added'] / 1e6:.1f} MB"),
        Verdict("faster to rebuild than naive", figures["change"] < figures["naive_change"], f"{figures['change']:.2f} s vs {figures['naive_change']:.2f} s"),
    ]


# -- two architectures: the aarch64 wheelhouse and each architecture's image -------------------

BOTH_PLATFORMS = ("manylinux_2_36_x86_64", "manylinux_2_36_aarch64")
# A monorepo whose shared package compiles a C extension: its aarch64 wheel is built in the
# arm64 builder under qemu, the emulated part of a two-platform wheelhouse.
COMPILED_FIXTURE = "tests/packages/cext_first_party"


def compiled_fixture(repo: Repository) -> Path:
    """The compiled fixture's directory."""
    return _fixture(repo, COMPILED_FIXTURE, "the monorepo whose compiled wheel `invoke bench --architectures` builds for aarch64")


def declare_both_platforms(repo: Repository) -> Repository:
    """The copy's root pyproject.toml declaring x86_64 and aarch64 (same interpreter), locked for both."""
    pyproject = repo.root / "pyproject.toml"
    text, count = re.subn(r'^platform = "[^"]+"$', f"platforms = {json.dumps(list(BOTH_PLATFORMS))}", pyproject.read_text(), flags=re.MULTILINE)
    if count != 1:
        msg = f"{pyproject}: expected one `platform = ...` line under [tool.wheelpipe.target] to turn into two platforms, found {count}"
        raise PipelineError(msg)
    pyproject.write_text(text)
    with quiet():
        invoke(repo.root, "lock")
    _commit(repo.root, "bench: x86_64 and aarch64")
    return load_repository(repo.root)


def architecture_rows(repo: Repository, settings: ImageSettings | None) -> list[Row]:
    """build-wheels for x86_64 and aarch64 (cold, nothing changed) next to x86_64 alone, and,
    with image settings, each architecture's image of one http service (cold, one-line change);
    aarch64's image steps run emulated by qemu on an x86_64 host, and their rows say so."""
    service = next(name for name, package in repo.services.items() if isinstance(package.service, HttpService))
    rows = []
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-arch-") as tmp:
        alone = working_copy(repo, Path(tmp, "alone"))
        report.step("timing build-wheels for x86_64 alone and for x86_64 and aarch64 (cold: nothing built, empty caches)")
        with quiet():
            single = timed(lambda: invoke(alone.root, "build-wheels", env={**os.environ, **empty_cache(Path(tmp, "cache-alone"))}))
        both = declare_both_platforms(working_copy(repo, Path(tmp, "both")))
        with quiet():
            cold = timed(lambda: invoke(both.root, "build-wheels", env={**os.environ, **empty_cache(Path(tmp, "cache-both"))}))
            noop = timed(lambda: invoke(both.root, "build-wheels"))
        rows += [
            Row("build-wheels, x86_64 alone, cold", single, "the same repository, one platform"),
            Row("build-wheels, x86_64 and aarch64, cold", cold, f"{cold / single:.2f}x x86_64 alone; pure wheels made once"),
            Row("build-wheels, x86_64 and aarch64, nothing changed", noop, ""),
        ]
        report.step(f"timing build-wheels of {COMPILED_FIXTURE} for x86_64 and aarch64: its C extension compiled for aarch64 under qemu")
        compiled_source = compiled_fixture(repo)
        _copy_files(compiled_source, Path(tmp, "compiled"), _project_files(compiled_source))
        _commit(Path(tmp, "compiled"), "bench: the compiled fixture", init=True)
        compiled = declare_both_platforms(load_repository(Path(tmp, "compiled")))
        with quiet():
            compiled_cold = timed(lambda: invoke(compiled.root, "build-wheels", env={**os.environ, **empty_cache(Path(tmp, "cache-compiled"))}))
            compiled_noop = timed(lambda: invoke(compiled.root, "build-wheels"))
        rows += [
            Row("build-wheels, compiled fixture, x86_64 and aarch64, cold (aarch64 emulated by qemu)", compiled_cold, "its C extension built in each builder"),
            Row("build-wheels, compiled fixture, nothing changed", compiled_noop, ""),
        ]
        if settings is None:
            return rows
        bench_settings = ImageSettings(prefix="wheelpipe-bench-arch/", base=settings.base, docker=settings.docker)
        for target in both.targets:
            emulated = " (emulated by qemu)" if emulation.is_foreign(target.machine) else ""
            report.step(f"timing `invoke image --service {service} --arch {target.debian_arch}`: cold, after a one-line change{emulated}")
            with quiet():
                image_cold = timed(lambda: build_image(both, bench_settings, service, no_cache=True, targets=(target,)))  # noqa: B023 - called at once
                one_line_change(both, service)
                image_change = timed(lambda: build_image(both, bench_settings, service, targets=(target,)))  # noqa: B023 - called at once
            rows += [
                Row(f"image {service} {target.debian_arch}, cold{emulated}", image_cold, "wheelhouse already built"),
                Row(f"image {service} {target.debian_arch}, one-line change{emulated}", image_change, f"{image_change / image_cold:.0%} of cold"),
            ]
        tags = settings.docker.run("images", "--format", "{{.Repository}}:{{.Tag}}", what="listing the benchmark's images").stdout.split()
        for tag in (t for t in tags if t.startswith(bench_settings.prefix)):
            settings.docker.run("rmi", tag, what=f"removing {tag}")
    return rows
