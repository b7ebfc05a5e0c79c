# setuptools declares C extensions in setup.py; everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(ext_modules=[Extension("wheelpipe_fixture_cext._native", ["src/wheelpipe_fixture_cext/_native.c"])])
