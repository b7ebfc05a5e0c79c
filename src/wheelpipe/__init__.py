"""The wheelhouse build-and-deploy pipeline of a Python microservice monorepo.

`tasks` is the command layer (a monorepo's tasks.py imports its `ns`); the logic lives in
one module per concern: model (the repository), target, locks, wheelhouse (with firstparty
and thirdparty), and errors.
"""

from .errors import PipelineError
from .model import Repository
from .workspace import load_repository

__all__ = ["PipelineError", "Repository", "load_repository"]
