from setuptools import setup

setup(
    name="wheelpipe-fixture-setup-py",
    version="0.5.0",
    description="A first-party package described by setup.py alone.",
    package_dir={"": "src"},
    packages=["wheelpipe_fixture_setup_py"],
    install_requires=["markupsafe>=2.1", "wheelpipe-fixture-setuptools"],
)
