"""A release's Helm chart: the committed deploy/chart/ packaged by helm, checked against the
chart registry and pushed there (`[tool.wheelpipe.release] chart-registry`).

A version is released once: a registry that already holds this very package under the
version is left as it is, one that holds another package under it is refused. The package is
made with the commit's time stamps, so the same commit gives the same bytes and the same
digest wherever it is released.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry
from .console import report
from .deploy import DNS_LABEL, ChartRegistry, DeployError
from .errors import ReleaseError
from .fsutil import sha256_file
from .helm import Helm
from .manifests import DEPLOY_DIR
from .model import Repository

CHART_PREFIX = "chart/"  # the chart's files among the released deploy/ files


@dataclass(frozen=True)
class ChartPackage:
    """The committed chart, packaged by helm for the release's chart registry."""

    name: str
    version: str
    path: Path  # <name>-<version>.tgz, in a temporary directory
    sha256: str
    registry: ChartRegistry

    @property
    def repository(self) -> str:
        return self.registry.repository(self.name)

    @property
    def reference(self) -> str:
        return f"{self.registry.host}/{self.repository}:{self.version}"


def package_chart(repo: Repository, deployed: dict[str, bytes], registry_: ChartRegistry, workdir: Path, *, stamp: int, made_of: str) -> ChartPackage:
    """The release's committed deploy/chart/ (the bytes the archive ships), packaged by helm
    with every time stamp `stamp` (the commit's): the same commit gives the same package, so
    a second push of it stores the very manifest the first did. `made_of` says what the
    release is made of (a commit, or the working tree) where the chart is missing."""
    import yaml  # the tooling lock's PyYAML; only a release with a chart registry reads YAML

    chart = {name.removeprefix(CHART_PREFIX): data for name, data in deployed.items() if name.startswith(CHART_PREFIX)}
    where = f"{DEPLOY_DIR}/{CHART_PREFIX}Chart.yaml"
    if "Chart.yaml" not in chart:
        msg = f"pyproject.toml: [tool.wheelpipe.release] chart-registry is set, but {made_of} has no {where}; run `invoke chart` and commit {DEPLOY_DIR}/{CHART_PREFIX}"
        raise ReleaseError(msg)
    try:
        meta = yaml.safe_load(chart["Chart.yaml"])
    except yaml.YAMLError as error:
        msg = f"{where}: not YAML ({getattr(error, 'problem', None) or error}); run `invoke chart`"
        raise ReleaseError(msg) from None
    name, version = (meta.get("name"), meta.get("version")) if isinstance(meta, dict) else (None, None)
    if not (isinstance(name, str) and DNS_LABEL.fullmatch(name)):
        msg = f"{where}: expected a chart name that is a DNS-1123 label, found {name!r}; run `invoke chart`"
        raise ReleaseError(msg)
    if version != repo.release_version:
        msg = f"{where}: version {version!r}, but the release is {repo.release_version!r} ([tool.wheelpipe.release] version); run `invoke chart` and commit it"
        raise ReleaseError(msg)
    directory = workdir / name
    for relative, data in chart.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for path in [directory, *directory.rglob("*")]:
        os.utime(path, (stamp, stamp))
    output = workdir / "package"
    output.mkdir()
    helm = Helm.find("pyproject.toml: [tool.wheelpipe.release] chart-registry is set")
    package = helm.package(directory, output)
    # helm push stamps the OCI manifest with the package file's time (created).
    os.utime(package, (stamp, stamp))
    return ChartPackage(name, version, package, sha256_file(package), registry_)


def check_chart_unreleased(chart: ChartPackage) -> bool:
    """Whether the chart still needs pushing: no when the registry already holds this very
    package under its version. A version that holds another package is refused: a version
    is released once, and a tag moved under a cluster's feet is a different deploy."""
    try:
        stored = registry.manifest(chart.registry.host, chart.repository, chart.version)
    except DeployError as error:
        raise ReleaseError(f"pushing the chart to {chart.registry.remote}: {error}") from None
    if stored is None:
        return True
    layers = _layer_digests(stored)
    if layers == [f"sha256:{chart.sha256}"]:
        report.info(f"the chart {chart.reference} is already in the registry, this very package (sha256 {chart.sha256}): not pushed again")
        return False
    found = ", ".join(str(d) for d in layers) or "no chart layer"
    msg = f"{chart.registry.remote}: {chart.name}:{chart.version} already holds another chart ({found}; this release's package is sha256:{chart.sha256}): a version is released once; raise [tool.wheelpipe.release] version"
    raise ReleaseError(msg)


def push_chart(chart: ChartPackage) -> str:
    report.step(f"pushing the chart {chart.name} {chart.version} to {chart.registry.remote}")
    helm = Helm.find("pyproject.toml: [tool.wheelpipe.release] chart-registry is set")
    digest = helm.push(chart.path, chart.registry.remote, plain_http=registry.is_loopback(chart.registry.host))
    stored = registry.manifest(chart.registry.host, chart.repository, digest)
    if stored is None or _layer_digests(stored) != [f"sha256:{chart.sha256}"]:
        msg = f"{chart.registry.remote}: helm pushed {chart.name}:{chart.version} as {digest}, but the registry does not hold this release's package under it"
        raise ReleaseError(msg)
    return digest


def _layer_digests(stored: dict[str, Any]) -> list[object]:
    """The digests of an OCI manifest's layers: a chart's manifest has one, the package."""
    return [layer.get("digest") for layer in stored.get("layers", []) if isinstance(layer, dict)]
