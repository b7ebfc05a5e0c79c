"""The monorepo's commands: the wheelpipe pipeline's invoke tasks (wheelpipe.tasks)."""

from wheelpipe.tasks import ns  # noqa: F401
