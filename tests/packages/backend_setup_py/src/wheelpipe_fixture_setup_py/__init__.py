"""Built by setuptools' legacy backend from setup.py."""

BACKEND = "setuptools (legacy)"
