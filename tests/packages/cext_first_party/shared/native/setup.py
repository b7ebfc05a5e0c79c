# setuptools declares C extensions in setup.py; everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(ext_modules=[Extension("wheelpipe_fixture_native._speedups", ["src/wheelpipe_fixture_native/_speedups.c"])])
