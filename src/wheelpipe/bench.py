"""`invoke bench`: the pipeline's speed measured against the naive way, in the same run.

Each figure is the wall time of a real command in a fresh clone of the repository's
HEAD; pip's download cache is shared by both sides, so neither pays for the network
more than the other.
"""

from __future__ import annotations

import io
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .console import Reporter, run
from .errors import ToolError
from .docker import Docker
from .images import ImageSettings, build_image
from .model import Repository, load_repository
from .wheelhouse import Wheelhouse, build_wheels


@dataclass
class Row:
    measure: str
    seconds: float
    note: str = ""


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def clone(repo: Repository, destination: Path, reporter: Reporter) -> Repository:
    run(["git", "clone", "-q", "--no-hardlinks", repo.root, destination], reporter=reporter, what="cloning the repository")
    return load_repository(destination)


def invoke(repo: Repository, *args: str, reporter: Reporter, env: dict[str, str] | None = None) -> None:
    run([sys.executable, "-m", "invoke", *args], reporter=reporter, what=f"invoke {' '.join(args)}", cwd=repo.root, env=env)


def one_line_change(repo: Repository) -> str:
    """Append a line to the first module of the first service, as a developer's edit would."""
    service = next(iter(repo.services.values()))
    module = sorted((service.path / "src").rglob("*.py"))[0]
    with module.open("a") as stream:
        stream.write("# bench: a one-line change\n")
    return f"{service.directory}: {module.name}"


def naive_wheelhouse(repo: Repository, outdir: Path, reporter: Reporter, env: dict[str, str]) -> None:
    """What a bare pip-tools setup does: `python -m build` per package, `pip wheel -r` per service."""
    for package in repo.packages.values():
        run([sys.executable, "-m", "build", "--outdir", outdir, package.path], reporter=reporter, what=f"naive build of {package.label}", env=env)
    for service in repo.services:
        run(
            [sys.executable, "-m", "pip", "wheel", "--require-hashes", "--no-deps", "-w", outdir, "-r", repo.lock_path(service)],
            reporter=reporter,
            what=f"naive pip wheel for {service}",
            env=env,
        )


def wheelhouse_rows(repo: Repository, reporter: Reporter) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-") as tmp:
        # Cold means a fresh machine: no wheelhouse and an empty pip cache, for both sides.
        ours_cache = {"PIP_CACHE_DIR": str(Path(tmp, "cache-ours"))}
        naive_cache = {"PIP_CACHE_DIR": str(Path(tmp, "cache-naive"))}
        ours = clone(repo, Path(tmp, "ours"), reporter)
        reporter.step("timing build-wheels: cold, warm cache, no-op, after a one-line change")
        cold = timed(lambda: invoke(ours, "build-wheels", reporter=reporter, env=ours_cache))
        warm = timed(lambda: invoke(ours, "build-wheels", "--clean", reporter=reporter, env=ours_cache))
        noop = timed(lambda: invoke(ours, "build-wheels", reporter=reporter, env=ours_cache))
        # The same no-op without the interpreter's and invoke's start-up (~0.15 s of the above).
        quiet = Reporter(stream=io.StringIO())
        noop_work = timed(lambda: build_wheels(load_repository(ours.root), reporter=quiet))
        changed = one_line_change(ours)
        incremental = timed(lambda: invoke(ours, "build-wheels", reporter=reporter, env=ours_cache))
        check = timed(lambda: invoke(ours, "lock", "--check", reporter=reporter))
        reporter.step("timing the naive way: python -m build per package, pip wheel -r per service")
        naive_repo = clone(repo, Path(tmp, "naive"), reporter)
        naive = timed(lambda: naive_wheelhouse(naive_repo, Path(tmp, "naive-wheels"), reporter, naive_cache))
        naive_warm = timed(lambda: naive_wheelhouse(naive_repo, Path(tmp, "naive-wheels-2"), reporter, naive_cache))
    return [
        Row("build-wheels, cold (no wheelhouse, empty pip cache)", cold, f"naive: {naive:.2f} s ({naive / cold:.1f}x slower)"),
        Row("build-wheels --clean, warm pip cache", warm, f"naive: {naive_warm:.2f} s ({naive_warm / warm:.1f}x slower)"),
        Row("build-wheels, nothing changed", noop, f"{noop / cold:.1%} of cold, {noop / warm:.1%} of warm"),
        Row("build-wheels, nothing changed, in-process", noop_work, "the pipeline's own work, without start-up"),
        Row("build-wheels, one-line change", incremental, changed),
        Row("lock --check", check, "recompiles every lock with pip-compile"),
        Row("naive, cold: build per package + pip wheel -r per service", naive, "same clone, its own empty pip cache"),
        Row("naive, warm pip cache", naive_warm, ""),
    ]


def wheelhouse_verdicts(rows: list[Row]) -> list[str]:
    """The issue's targets, judged on this run's figures."""
    cold, warm, noop, noop_work, _, _, naive, naive_warm = (row.seconds for row in rows)
    return [
        f"no-op <= 1 s: {'met' if noop <= 1 else 'MISSED'} ({noop:.2f} s)",
        f"no-op <= 5% of cold: {'met' if noop <= 0.05 * cold else 'MISSED'} ({noop / cold:.1%}; in-process {noop_work / cold:.1%})",
        f"cold faster than naive: {'met' if cold < naive else 'MISSED'} ({cold:.2f} s vs {naive:.2f} s; warm {warm:.2f} s vs {naive_warm:.2f} s)",
    ]


def table(rows: list[Row]) -> str:
    width = max(len(r.measure) for r in rows)
    lines = [f"{'measure':<{width}}  {'seconds':>8}  note", f"{'-' * width}  {'-' * 8}  {'-' * 4}"]
    lines += [f"{r.measure:<{width}}  {r.seconds:>8.2f}  {r.note}" for r in rows]
    return "\n".join(lines)


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


def _docker_size(docker: Docker, reference: str, reporter: Reporter) -> int:
    return int(docker.run("image", "inspect", "-f", "{{.Size}}", reference, reporter=reporter, what="image size").stdout)


def _installed_size(docker: Docker, reference: str, reporter: Reporter) -> int:
    result = docker.run("run", "--rm", "--network", "none", "--entrypoint", "du", reference, "-sb", "/srv/venv", reporter=reporter, what="du of the venv")
    return int(result.stdout.split()[0])


def install_step_seconds(house: Wheelhouse, service: str, workdir: Path, reporter: Reporter) -> tuple[float, float]:
    """The image's install step (pip from its wheel, the Dockerfile's flags) next to `uv pip install`."""
    manifest = house.install_manifest(service)
    pip_wheel = house.path / house.installer().file
    flags = ["--isolated", "--no-index", "--no-cache-dir", "--require-hashes", "--only-binary", ":all:", "--no-deps", "--find-links", house.path, "-r", manifest]
    run([sys.executable, "-m", "venv", "--without-pip", workdir / "pip-env"], reporter=reporter, what="venv")
    pip = timed(lambda: run([workdir / "pip-env/bin/python", f"{pip_wheel}/pip", "install", *flags], reporter=reporter, what="pip install"))
    uv = [sys.executable, "-m", "uv"]
    run([*uv, "venv", "-q", workdir / "uv-env"], reporter=reporter, what="uv venv")
    uv_seconds = timed(
        lambda: run(
            [*uv, "pip", "install", "--python", workdir / "uv-env/bin/python", "--offline", "--no-cache", "--no-index",
             "--require-hashes", "--no-deps", "--compile-bytecode", "--find-links", house.path, "-r", manifest],
            reporter=reporter,
            what="uv pip install",
        )
    )
    return pip, uv_seconds


def image_rows(repo: Repository, settings: ImageSettings, reporter: Reporter) -> tuple[list[Row], dict[str, float]]:
    service = next(iter(repo.services))
    docker = settings.docker
    quiet = Reporter(stream=io.StringIO(), verbose=reporter.verbose)
    created: list[str] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="wheelpipe-bench-image-") as tmp:
        ours = clone(repo, Path(tmp, "ours"), reporter)
        bench_settings = ImageSettings(prefix="wheelpipe-bench/", base=settings.base, docker=docker)
        build_wheels(ours, reporter=quiet)
        reporter.step(f"timing `invoke image --service {service}`: cold, nothing changed, after a one-line change")
        figures["cold"] = timed(lambda: created.append(build_image(ours, bench_settings, service, quiet, no_cache=True)))
        figures["noop"] = timed(lambda: build_image(ours, bench_settings, service, quiet))
        one_line_change(ours)
        figures["change"] = timed(lambda: build_image(ours, bench_settings, service, quiet))
        tag = created[0]
        base_size = _docker_size(docker, settings.base, reporter)
        figures["added"] = _docker_size(docker, tag, reporter) - base_size
        figures["installed"] = _installed_size(docker, tag, reporter)
        figures["pip"], figures["uv"] = install_step_seconds(build_wheels(ours, reporter=quiet).wheelhouse, service, Path(tmp), reporter)

        reporter.step("timing the naive single-stage image: repository copied in, pip install from the index")
        naive = clone(repo, Path(tmp, "naive"), reporter)
        (naive.root / "Dockerfile.naive").write_text(NAIVE_DOCKERFILE)
        shutil.copy(host_ca_bundle(), naive.root / "host-ca.pem")
        packages = " ".join(f"./{p.directory}" for p in naive.closure(service))
        naive_tag = f"wheelpipe-bench/naive-{service}:latest"

        def naive_build(*extra: str) -> None:
            docker.run("build", "--force-rm", *extra, "-f", str(naive.root / "Dockerfile.naive"), "-t", naive_tag,
                       "--build-arg", f"BASE_IMAGE={settings.base}", "--build-arg", f"SERVICE={service}",
                       "--build-arg", f"PACKAGES={packages}", str(naive.root), reporter=reporter, what="naive docker build")

        figures["naive_cold"] = timed(lambda: naive_build("--no-cache"))
        one_line_change(naive)
        figures["naive_change"] = timed(naive_build)
        figures["naive_added"] = _docker_size(docker, naive_tag, reporter) - base_size
        created.append(naive_tag)
        for reference in created:
            docker.run("rmi", reference, reporter=reporter, what=f"removing {reference}")
    mb = 1e6
    rows = [
        Row(f"image {service}, cold (no layer cache)", figures["cold"], "wheelhouse already built"),
        Row(f"image {service}, nothing changed", figures["noop"], ""),
        Row(f"image {service}, one-line change", figures["change"], f"{figures['change'] / figures['cold']:.0%} of cold"),
        Row("install step: pip (Dockerfile flags)", figures["pip"], "into a fresh venv, bytecode compiled"),
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


def image_verdicts(figures: dict[str, float]) -> list[str]:
    def judge(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return [
        f"rebuild after a code change <= 25% of cold: {judge(figures['change'] <= 0.25 * figures['cold'])} ({figures['change'] / figures['cold']:.0%})",
        f"image size minus base <= 1.1x installed: {judge(figures['added'] <= 1.1 * figures['installed'])} ({figures['added'] / figures['installed']:.2f}x)",
        f"smaller than naive: {judge(figures['added'] < figures['naive_added'])} ({figures['added'] / 1e6:.1f} MB vs {figures['naive_added'] / 1e6:.1f} MB)",
        f"faster to rebuild than naive: {judge(figures['change'] < figures['naive_change'])} ({figures['change']:.2f} s vs {figures['naive_change']:.2f} s)",
    ]
