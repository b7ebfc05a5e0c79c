"""A module that only exists to be built from an sdist."""

ORIGIN = "built by setuptools from its sdist"
