from setuptools import find_packages, setup

setup(
    name="acme-core",
    version="0.9.0",
    description="Totals, shared by the apps",
    package_dir={"": "src"},
    packages=find_packages("src"),
    install_requires=["attrs>=23"],
)
