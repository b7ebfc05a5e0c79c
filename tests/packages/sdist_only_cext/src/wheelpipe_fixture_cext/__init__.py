"""A C extension that only exists to be compiled from an sdist for the target."""

from ._native import compiled_for

__all__ = ["compiled_for"]
