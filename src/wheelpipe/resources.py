"""Files the pipeline ships inside its own distribution, so that a monorepo needs none of ours."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import ToolError

SERVICE_DOCKERFILE = "service.Dockerfile"
# Where that recipe lives in wheelpipe's own repository, so that `invoke affected` there can
# count a change to it (a monorepo that installs wheelpipe has no such path).
SERVICE_DOCKERFILE_SOURCE = f"src/wheelpipe/dockerfiles/{SERVICE_DOCKERFILE}"


def service_dockerfile() -> Path:
    """The runtime image recipe wheelpipe ships (wheelpipe/dockerfiles/service.Dockerfile).

    A path on disk, because `docker build` reads the file; an installed wheel and the editable
    install of this repository both keep the package's files as files.
    """
    packaged = resources.files(__package__).joinpath("dockerfiles", SERVICE_DOCKERFILE)
    if not isinstance(packaged, Path) or not packaged.is_file():
        msg = f"{packaged}: expected the service Dockerfile wheelpipe ships, found no such file; reinstall wheelpipe"
        raise ToolError(msg)
    return packaged
