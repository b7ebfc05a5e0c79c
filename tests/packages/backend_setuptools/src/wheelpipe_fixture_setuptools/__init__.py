"""Built by setuptools from setup.cfg."""

BACKEND = "setuptools"
