# What old setup.py files did: pkg_resources (gone from setuptools 81 on) to read a version.
import pkg_resources
from setuptools import setup

SETUPTOOLS = pkg_resources.get_distribution("setuptools").version

setup(
    name="wheelpipe-fixture-legacy-sdist",
    version="0.3.0",
    description="An sdist whose setup.py needs pkg_resources",
    package_dir={"": "src"},
    packages=["wheelpipe_fixture_legacy_sdist"],
)
