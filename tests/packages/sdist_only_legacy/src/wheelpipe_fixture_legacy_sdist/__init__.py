"""Built from its sdist by a setup.py that imports pkg_resources."""

ORIGIN = "built from its sdist with an old setuptools"
