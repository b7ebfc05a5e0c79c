"""The pipeline's commands: one thin invoke task each over the modules of this package.

A monorepo's tasks.py is one line, `from wheelpipe.tasks import ns`; the repository every
task works on is the directory invoke found that tasks.py in.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

# Modules whose names a task also takes are imported under another name.
from . import (
    PipelineError,
    baseimage,
    compose,
    deploy,
    emulation,
    installcheck,
    load_repository,
    locks,
    manifestcheck,
    manifests,
    startcheck,
    testsuite,
    toolingvenv,
    wheelhouse,
)
from . import affected as affected_module
from . import bench as benchmarks
from . import chart as charts
from . import image as images
from . import publish as publishing
from . import release as releases
from .console import Reporter, report, reporting
from .docker import Docker
from .errors import describe_os_error
from .model import HttpService, Repository, service_settings
from .requirements import TOOLING, lock_file
from .target import Target, architecture
from .tools import run
from .workspace import nearest_root


def repository_root(c: Context) -> Path:
    """The monorepo the task works on: the directory invoke loaded tasks.py from.

    invoke hands that directory to the configuration as the project location (where the
    project's invoke.yaml is looked for, the documented `project_location` of
    `invoke.Config`); it keeps it as `_project_prefix`. A Context made outside invoke's
    loader has none: then the nearest directory, from the working directory upwards, whose
    pyproject.toml declares [tool.wheelpipe.target].
    """
    prefix = getattr(c.config, "_project_prefix", None)
    if prefix:
        return Path(prefix).resolve()
    start = Path.cwd().resolve()
    return nearest_root(start) or start  # else load_repository says what is missing there


def _repository(c: Context) -> Repository:
    """The repository model, its notes (how it named a service, say) shown once, on stderr."""
    repo = load_repository(repository_root(c))
    for note in repo.notes:
        print(f"note: {note}", file=sys.stderr)
    return repo


# Called with the repository's root and a task's arguments before it runs; returns what to
# print should Ctrl-C stop it.
InterruptWatch = Callable[[Path, dict[str, Any]], Callable[[], str]]


TaskBody = Callable[..., None]


@overload
def reported(body: TaskBody, *, interrupted: InterruptWatch | None = None) -> TaskBody: ...


@overload
def reported(body: None = None, *, interrupted: InterruptWatch | None = None) -> Callable[[TaskBody], TaskBody]: ...


def reported(body: TaskBody | None = None, *, interrupted: InterruptWatch | None = None) -> TaskBody | Callable[[TaskBody], TaskBody]:
    """The one boundary where failures become one line and an exit code, never a traceback.

    A pipeline error, or an OSError that escaped it (a read-only or full disk), is `error: ...`
    and exit 1. Ctrl-C is exit 130 (128 + SIGINT, as a shell reports it) and one line; it
    claims more than "interrupted" only where `interrupted` can tell what the task left.
    It is also where the command's reporter is set, once, from its --verbose (every step
    reads it as console.report).
    """
    if body is None:
        return functools.partial(reported, interrupted=interrupted)

    @functools.wraps(body)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> None:
        root = repository_root(c)
        after_interrupt = interrupted(root, kwargs) if interrupted else lambda: "interrupted"
        try:
            with reporting(Reporter(verbose=bool(kwargs.get("verbose", False)))):
                body(c, *args, **kwargs)
        except PipelineError as error:
            raise Exit(f"error: {error}", code=1) from None
        except OSError as error:
            raise Exit(f"error: {describe_os_error(error, root)}", code=1) from None
        except KeyboardInterrupt:
            raise Exit(after_interrupt(), code=130) from None

    return wrapper


def _wheelhouse_interrupted(root: Path, kwargs: dict[str, Any]) -> Callable[[], str]:
    """build-wheels switches generations in one rename: the wheelhouse is whole either way; say which."""

    def generation() -> str | None:
        link = root / wheelhouse.WHEELHOUSE
        return os.readlink(link) if link.is_symlink() else None

    before = generation()

    def line() -> str:
        if generation() != before:
            return "interrupted: the new wheelhouse was already complete and in place"
        return "interrupted: the previous wheelhouse is intact" if before else "interrupted: no wheelhouse was made"

    return line


def _read_only_unless_github_output(root: Path, kwargs: dict[str, Any]) -> Callable[[], str]:
    """services and affected only read, except for the line --github-output appends."""
    return lambda: "interrupted" if kwargs.get("github_output") else "interrupted: nothing was changed"


@task(
    help={
        "service": "Lock only this service (its directory name under services/); default: all.",
        "upgrade": "Re-resolve every package to its newest allowed version.",
        "upgrade-package": "Re-resolve only this package (repeatable).",
        "check": "Change nothing; exit 1 naming each stale lock and its difference.",
        "resolver": "uv (default) or pip-tools; overrides [tool.wheelpipe.lock] resolver.",
        "verbose": "Show the underlying resolver commands and output.",
    },
    iterable=["upgrade_package"],
)
@reported
def lock(c: Context, service: str | None = None, upgrade: bool = False, upgrade_package: list[str] | None = None, check: bool = False, resolver: str | None = None, verbose: bool = False) -> None:
    """Resolve requirements/<service>.txt, dev.txt (and build.txt) with hashes, for the target."""
    repo = _repository(c)
    locks.lock(
        repo,
        service=service,
        upgrade=upgrade,
        upgrade_packages=tuple(upgrade_package or ()),
        check=check,
        resolver=resolver,
    )
    stale = None if check else toolingvenv.after_lock(repo.root)
    if stale:  # said now, not only when invoke test stops on it
        report.warning(stale)


@task(
    help={
        "service": "Build only this service's closure; default: every service.",
        "clean": "Ignore the current wheelhouse and build every wheel again.",
        "verbose": "Show the underlying build and pip commands and output.",
    }
)
@reported(interrupted=_wheelhouse_interrupted)
def build_wheels(c: Context, service: str | None = None, clean: bool = False, verbose: bool = False) -> None:
    """Build wheelhouse/: every wheel, install/<service>.txt, manifest.json, SHA256SUMS."""
    repo = _repository(c)
    wheelhouse.build_wheels(repo, service=service, clean=clean)


@task(
    help={
        "install": "Also install each service's manifest offline into a throwaway environment of each target's interpreter (this host's, else the base image's in a container without network, another architecture's under qemu) and import its first-party modules and console scripts' entry points.",
        "base-image": "With --install on a host that is not the target: the image whose interpreter stands in (config image.base).",
        "verbose": "Show the underlying commands and output.",
    }
)
@reported
def verify_wheelhouse(c: Context, install: bool = False, base_image: str | None = None, verbose: bool = False) -> None:
    """Check wheelhouse/ is exactly what the locks, sources and target give: wheels, install manifests, manifest.json, SHA256SUMS (--install: each service installs offline and imports)."""
    repo = _repository(c)
    settings = _image_settings(c, base_image=base_image)
    # Where each target's install check can run is known before anything is read.
    places = installcheck.places_for(repo, settings.base, settings.docker) if install else []
    verified = wheelhouse.verify_against(repo)
    for line in verified.lines():
        print(line)
    for line in installcheck.check_every_target(repo, verified.wheelhouse, places):
        print(line)


@task(
    help={
        "k": "Only tests matching this pytest -k expression.",
        "fast": f"Leave out the tests that need Docker, a package index or a whole build (-m '{testsuite.FAST}').",
        "jobs": f"Workers to run the tests in: a number (1: no workers, one process) or {testsuite.AUTO} (one per CPU and one more, the default).",
        "verbose": "Pass -v to pytest.",
    }
)
@reported(interrupted=_wheelhouse_interrupted)
def test(c: Context, k: str | None = None, fast: bool = False, jobs: str = testsuite.AUTO, verbose: bool = False) -> None:
    """Run the whole test suite: pipeline, packages and services (pytest), in workers. The
    packages' tests import their built wheels: the wheelhouse is brought up to date first."""
    root = repository_root(c)
    testsuite.workers(jobs)  # a bad --jobs first, then a venv the tests would fail in: before any build
    toolingvenv.require_installed(root)
    command = testsuite.suite_command(jobs=jobs, fast=fast, k=k, verbose=verbose)
    wheelhouse.build_wheels(_repository(c))
    with c.cd(str(root)):
        result = c.run(shlex.join(command), pty=False, warn=True)
    if result.exited == testsuite.NO_TESTS_RAN:
        print(testsuite.nothing_ran(root, k=k, fast=fast))
    elif result.exited:
        raise Exit(code=result.exited)  # pytest has said what failed


# What `invoke lint` runs, in the repository's root: each linter reads what to check, and how,
# from the root pyproject.toml ([tool.ruff], [tool.mypy]).
LINTERS = (("ruff", ("check",)), ("mypy", ()))


@task(help={"verbose": "Show every command run, and its output."})
@reported
def lint(c: Context, verbose: bool = False) -> None:
    """Check the code with ruff and mypy, as the root pyproject.toml's [tool.ruff] and [tool.mypy] configure them."""
    root = repository_root(c)
    failed = []
    for tool, args in LINTERS:
        if importlib.util.find_spec(tool) is None:
            msg = f"{tool} is not installed in the tooling venv ({sys.prefix}); add it to {lock_file(TOOLING, 'in')}, run `invoke lock` and install {lock_file(TOOLING)}"
            raise PipelineError(msg)
        command = " ".join((tool, *args))
        report.step(command)
        result = run([sys.executable, "-m", tool, *args], what=command, cwd=root, check=False)
        said = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            print(said)  # the findings, each naming its file and line
            failed.append(command)
        else:
            report.info(said.splitlines()[-1] if said else "no findings")
    if failed:
        msg = f"{' and '.join(failed)} found problems (listed above)"
        raise PipelineError(msg)


def _image_settings(c: Context, prefix: str | None = None, base_image: str | None = None) -> images.ImageSettings:
    config = c.config.image
    return images.ImageSettings(
        prefix=prefix if prefix is not None else config.prefix,
        base=base_image or config.base,
        docker=Docker(command=config.docker, buildkit=bool(config.buildkit)),
    )


IMAGE_HELP = {
    "service": "The service (its directory name under services/).",
    "prefix": "Registry prefix of the tag <prefix><service>:<version> (config image.prefix).",
    "base-image": "Base image (config image.base; default python:3.11-slim-bookworm); with several platforms, another architecture's is its tag with -arm64 appended.",
    "verbose": "Show the underlying docker and uv commands and output.",
}
ARCH_HELP = {"arch": "Only the image for this architecture (arm64 or amd64, of the declared platforms); default: each platform's."}


@task(
    help={
        **IMAGE_HELP,
        **ARCH_HELP,
        "all": "Build every service's image, several at once (their output lines start with the service's name).",
        "jobs": "How many images --all builds at once (default: one per core).",
        "no-cache": "Build without Docker's layer cache.",
        "push": "Then push each tag to the registry its prefix names (e.g. --prefix registry.example.com/team/); prints repository@digest.",
    }
)
@reported
def image(c: Context, service: str | None = None, all: bool = False, prefix: str | None = None, base_image: str | None = None, no_cache: bool = False, push: bool = False, jobs: int = 0, arch: str | None = None, verbose: bool = False) -> None:  # noqa: PLR0913, A002 - the flag is --all; PLR0913: one parameter per command-line flag, as invoke reads them
    """Build, verify and tag <prefix><service>:<version> (with several platforms, :<version>-<arch> each) from the wheelhouse, offline; with --push, push it (several: and their image index)."""
    repo = _repository(c)
    if (service is not None) == bool(all):  # `--service ""` is a name to look up, not "none given"
        raise Exit(f"error: give --service NAME or --all (services: {', '.join(repo.services)})")
    targets = _targets(repo, arch)
    if push and arch and len(repo.targets) > 1:
        raise Exit("error: --push pushes the image index of every declared platform: leave out --arch")
    settings = _image_settings(c, prefix, base_image)
    if push:
        images.require_registry(settings.prefix)  # before any build
    selected = repo.select_services(service)
    images.build_images(repo, settings, selected, no_cache=no_cache, jobs=jobs, targets=targets)
    for name in selected if push else ():
        pushed = images.push_service(repo, settings, name)
        # What the registry said is what the manifests pin: kept in the pipeline's store.
        deploy.record_pushed(repo.root / wheelhouse.STORE, pushed)
        print(pushed.reference)


def _targets(repo: Repository, arch: str | None) -> tuple[Target, ...]:
    """The targets --arch names (one of the declared platforms), or every declared one."""
    return (repo.target_for(architecture(arch, "--arch"), "--arch"),) if arch else repo.targets


@task(
    help={
        "repository-url": "Upload URL of the index; overrides TWINE_REPOSITORY_URL (credentials: TWINE_USERNAME/TWINE_PASSWORD or ~/.pypirc).",
        "simple-url": "The index's Simple API root, where every published file is read back (default: <upload URL>/simple/; pypi.org's and test.pypi.org's own).",
        "skip-existing": "Skip (and report) a wheel whose file the index already has, the same bytes, instead of failing.",
        "strict": "Refuse a wheel twine check warns about (no or an empty long_description, no content type), as for a public index (pypi.org, test.pypi.org), where this is always on.",
        "verbose": "Show the twine commands and their (redacted) output.",
    }
)
@reported
def publish(c: Context, repository_url: str | None = None, simple_url: str | None = None, skip_existing: bool = False, strict: bool = False, verbose: bool = False) -> None:
    """Upload the wheelhouse's first-party wheels to a package index with twine (after twine check; --strict for a public index), then read each back from its Simple API."""
    house = wheelhouse.open_wheelhouse(repository_root(c))
    published = publishing.publish(
        house, repository_url=repository_url, simple_url=simple_url, skip_existing=skip_existing, strict=strict,
    )
    print(published.summary())


@task(help={**IMAGE_HELP, **ARCH_HELP, "start-timeout": f"Seconds the started image may take until its health check passes (default {startcheck.START_TIMEOUT_SECONDS:g})."})
@reported
def verify_image(c: Context, service: str, prefix: str | None = None, base_image: str | None = None, start_timeout: str | None = None, arch: str | None = None, verbose: bool = False) -> None:  # noqa: PLR0913 - one parameter per command-line flag
    """Check that an existing image (each platform's) holds exactly the distributions its install manifest pins, then start it until its health check passes."""
    timeout = startcheck.START_TIMEOUT_SECONDS if start_timeout is None else startcheck.timeout_seconds(start_timeout)
    repo = _repository(c)
    declared = service_settings(repo.service(service), "to start its image")
    targets = _targets(repo, arch)
    settings = _image_settings(c, prefix, base_image)
    settings.docker.require_engine()
    house = wheelhouse.open_wheelhouse(repository_root(c))
    facts = images.commit_facts(repo)
    for target in targets:
        own = images.target_settings(repo, settings, target)
        tag = images.image_tag(repo, settings, service, target)
        if not settings.docker.image_id(tag):
            raise Exit(f"error: image {tag} does not exist; build it with `invoke image --service {service}`")
        images.verify_image(house, settings.docker, tag, images.service_image(repo, own, house, service, facts, target))
        print(startcheck.check_unprivileged(settings.docker, tag, own.base))
        print(startcheck.check_started(settings.docker, tag, service, declared, timeout=timeout))


@task(
    help={
        "tag": f"Tag of the image (default {baseimage.BASE_REPOSITORY}:<python>-slim-<suite>, e.g. {baseimage.DEFAULT_TAG}; with --builder {baseimage.BUILDER_REPOSITORY}:<python>-slim-<suite>).",
        "suite": "Debian suite to bootstrap (its python3 must be the target's).",
        "builder": "Make the builder image instead: the suite's base image (bootstrapped first if missing) plus a compiler and python3-dev. build-wheels builds sdist-only dependencies in it when this host is not the target; never a runtime image.",
        "force": "Bootstrap again even if the tag exists (with --builder: make the builder again, reusing its base).",
        "arch": "Architecture of the image, amd64 or arm64 (default: the first platform's); another than this host's runs under qemu-user-static (binfmt_misc), and the tags gain -arm64.",
        "verbose": "Show the underlying commands and output.",
    }
)
@reported
def base_image(c: Context, tag: str | None = None, suite: str = "bookworm", builder: bool = False, force: bool = False, arch: str | None = None, verbose: bool = False) -> None:
    """Bootstrap a python:3.11-slim-bookworm equivalent from Debian packages (debootstrap + docker import); --builder: the target's builder image."""
    repo = _repository(c)
    target = repo.target_for(architecture(arch, "--arch"), "--arch") if arch else repo.target
    settings = _image_settings(c)
    make = baseimage.bootstrap_builder if builder else baseimage.bootstrap
    make(settings.docker, target, tag, suite, force)


@task(
    help={
        "heavy": "Also lock a copy with tests/packages/heavy_service as services/heavy, uv against pip-tools (pip-tools takes minutes).",
        "scaling": "Also time lock, build-wheels (cold, no-op) and affected on generated monorepos of 3, 10 and 30 services.",
        "with-images": "Also time the images against a naive single-stage Dockerfile (needs Docker).",
        "architectures": "Also time build-wheels for x86_64 and aarch64 against x86_64 alone, and with --with-images each architecture's image (aarch64's emulated by qemu; needs the -arm64 base).",
        "base-image": IMAGE_HELP["base-image"],
        "verbose": "Show every command the benchmark runs.",
    },
    auto_shortflags=False,  # -h would be --heavy, not help
)
@reported
def bench(c: Context, heavy: bool = False, scaling: bool = False, with_images: bool = False, architectures: bool = False, base_image: str | None = None, verbose: bool = False) -> None:  # noqa: PLR0913 - one parameter per command-line flag
    """Time build-wheels and the naive way, lock with uv and pip-tools (and --heavy, --scaling, --with-images, --architectures); print tables and targets."""
    repo = _repository(c)
    if with_images:
        settings = _image_settings(c, base_image=base_image)
        images.require_base(repo, settings, repo.target)  # before minutes of other timing
    if heavy:
        benchmarks.heavy_fixture(repo)
    wheels = benchmarks.wheelhouse_figures(repo)
    rows, verdicts = benchmarks.wheelhouse_rows(wheels), benchmarks.wheelhouse_verdicts(wheels)
    deployed = benchmarks.deploy_figures(repo)
    rows += benchmarks.deploy_rows(deployed)
    verdicts += benchmarks.deploy_verdicts(deployed)
    lock_rows = benchmarks.repository_lock_comparison(repo).rows()
    if heavy:
        heavy_locks = benchmarks.heavy_lock_comparison(repo)
        lock_rows += heavy_locks.rows()
        verdicts += benchmarks.lock_verdicts(heavy_locks)
    points = benchmarks.scaling_points(repo) if scaling else []
    verdicts += benchmarks.scaling_verdicts(points)
    if with_images:
        image_rows, figures = benchmarks.image_rows(repo, settings)
        rows += image_rows
        verdicts += benchmarks.image_verdicts(figures)
    if architectures:
        rows += benchmarks.architecture_rows(repo, settings if with_images else None)
    print(benchmarks.table(rows))
    print()
    print(benchmarks.side_by_side(lock_rows))
    if points:
        print()
        print(benchmarks.scaling_table(points))
    print()
    for verdict in verdicts:
        print(verdict)


@task(
    help={
        "skip-gates": "Skip `lock --check`, the first-party tests and the offline install check (not for real releases).",
        "allow-dirty": "Release the working tree as it is, uncommitted changes and untracked files included; the archive is then dist/wheelhouse-<version>-dirty.tar.gz, its commit marked -dirty.",
        "tag": "The tag this release is (CI's tag; GitHub Actions' is read from GITHUB_REF_NAME by itself): it must be v<version>, and name HEAD.",
        "verbose": "Show every underlying command.",
    }
)
@reported
def release(c: Context, skip_gates: bool = False, allow_dirty: bool = False, tag: str | None = None, verbose: bool = False) -> None:
    """Gate, build from HEAD's committed files and verify the wheelhouse; write dist/wheelhouse-<version>.tar.gz (once per version) with SBOMs and SHA256SUMS; push the chart where [tool.wheelpipe.release] chart-registry says (prints oci://...@digest)."""
    repo = _repository(c)
    settings = _image_settings(c)
    # `--tag ""` (an unset CI variable) is a tag that names nothing, not "no tag".
    tags = [*([releases.ReleaseTag(tag, "--tag")] if tag is not None else []), *releases.ci_tags(os.environ)]
    released = releases.release(
        repo, gates=not skip_gates, allow_dirty=allow_dirty, base_image=settings.base, docker=settings.docker, tags=tags,
    )
    if released.chart is not None:
        print(released.chart)


AFFECTED_HELP = {
    "json": "Print JSON for CI instead: {\"since\": REF, \"services\": [...], \"reasons\": {service: [paths]}}.",
    "github-output": "Also append services=<JSON list> to the file $GITHUB_OUTPUT names (a GitHub Actions step output).",
}


@task(
    help={
        "since": "The git ref to compare the working tree with (from its merge base with HEAD).",
        "all-if-unknown": "When REF is empty, all zeros (a new branch) or no commit here, list every service instead of failing.",
        **AFFECTED_HELP,
    }
)
@reported(interrupted=_read_only_unless_github_output)
def affected(c: Context, since: str, json: bool = False, all_if_unknown: bool = False, github_output: bool = False) -> None:  # noqa: A002 - the flag is --json
    """List the services whose image a change since REF can alter (closure, locks, Dockerfile, target)."""
    found = affected_module.affected_services(_repository(c), since, all_if_unknown=all_if_unknown)
    if github_output:
        affected_module.write_github_output(list(found), affected=found)
    text = affected_module.render(since, found, as_json=json)
    if text:
        print(text)


@task(help=AFFECTED_HELP)
@reported(interrupted=_read_only_unless_github_output)
def services(c: Context, json: bool = False, github_output: bool = False) -> None:  # noqa: A002 - the flag is --json
    """List every service of the repository model, one per line (or a JSON list)."""
    repo = _repository(c)
    if github_output:
        affected_module.write_github_output(list(repo.services))
    print(affected_module.render_services(repo, as_json=json))


@task(help={k: v for k, v in IMAGE_HELP.items() if k != "service"})
@reported
def up(c: Context, prefix: str | None = None, base_image: str | None = None, verbose: bool = False) -> None:
    """Build every image, write compose.yaml and start all services; wait until healthy (a worker without a health check: running)."""
    repo = _repository(c)
    settings = _image_settings(c, prefix, base_image)
    # Compose runs this host's architecture's images: only those are built (when declared).
    here = tuple(t for t in repo.targets if t.machine == emulation.host_machine()) or repo.targets
    images.build_images(repo, settings, list(repo.services), targets=here)
    tool = " ".join(compose.compose_command(settings.docker))
    for name, package in repo.services.items():
        if isinstance(package.service, HttpService):
            port = os.environ.get(package.service.port_env, package.service.port)
            print(f"{name}: http://127.0.0.1:{port}{package.service.health_path}")
        else:
            print(f"{name}: a worker, on no port (its log: {tool} -f {compose.COMPOSE_FILE} logs {name})")
    compose.up(repo, settings)


@task(help={"prefix": IMAGE_HELP["prefix"], "verbose": IMAGE_HELP["verbose"]})
@reported
def down(c: Context, prefix: str | None = None, verbose: bool = False) -> None:
    """Stop and remove the containers `invoke up` started."""
    repo = _repository(c)
    compose.down(repo, _image_settings(c, prefix))


DEPLOY_HELP = {
    "env": "The environment ([tool.wheelpipe.deploy.<env>] of the root pyproject.toml); default: the only one configured.",
    "service": "Only this service; default: every service.",
    "affected-since": "Only the services a change since this git ref can alter (as `invoke affected`).",
}


def _deployed(repo: Repository, env: str | None, service: str | None, affected_since: str | None) -> tuple[deploy.Environment, list[str]]:
    """The environment and the services asked for, resolved once at the boundary."""
    chosen = manifests.environment(repo, env)
    if affected_since is not None:
        names = list(affected_module.affected_services(repo, affected_since))
        return chosen, [name for name in names if service is None or name == repo.service(service).service_name]
    return chosen, repo.select_services(service)


@task(help={**DEPLOY_HELP, "check": "Write nothing: validate the committed manifests (Kubernetes schemas, restricted pod security, the registry's digests) and name each difference from what the model and the registry say now."})
@reported
def manifests_(c: Context, env: str | None = None, service: str | None = None, affected_since: str | None = None, check: bool = False) -> None:
    """Write deploy/manifests/<env>/<service>.yaml: a Deployment (and a Service) per service, images pinned by the pushed digest."""
    repo = _repository(c)
    chosen, names = _deployed(repo, env, service, affected_since)
    rendered = manifests.render(repo, chosen, names)  # every one, before any is written
    if not check:
        for line in manifests.write(repo, rendered):
            print(line)
        return
    failures, passed = manifestcheck.check(repo, chosen, rendered, every_service=service is None and affected_since is None)
    for line in passed:
        print(line)
    if failures:
        raise PipelineError("\n".join([f"{len(failures)} problem(s) in the manifests of {chosen.name}:", *failures]))


@task(help={"env": DEPLOY_HELP["env"]})
@reported
def chart(c: Context, env: str | None = None) -> None:
    """Write deploy/chart/: one Helm chart of every service (values: one block each, images pinned by digest)."""
    repo = _repository(c)
    chosen = manifests.environment(repo, env)
    files = charts.chart_files(repo, chosen, manifests.render(repo, chosen, list(repo.services)))
    for line in charts.write(repo, files):
        print(line)


ns = Collection(lock, build_wheels, verify_wheelhouse, image, verify_image, base_image, up, down, release, test, lint, bench, affected, services, publish, chart)
ns.add_task(manifests_, name="manifests")
ns.configure(
    {
        "image": {
            # Overridable per run with INVOKE_IMAGE_PREFIX, INVOKE_IMAGE_BASE, ... or invoke.yaml.
            "prefix": "wheelpipe/",
            "base": "python:3.11-slim-bookworm",
            "docker": "docker",
            "buildkit": False,
        }
    }
)
