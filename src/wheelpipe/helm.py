"""The one seam to helm: package a chart directory, push the package to an OCI registry.

Helm is needed only by a release whose [tool.wheelpipe.release] names a chart-registry;
nothing else of the pipeline runs it (the chart itself is written by `invoke chart`).
Credentials are helm's own (`helm registry login`), never passed through here.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import PipelineError, ToolError
from .tools import run

# `helm push` reports what the registry stored: "Pushed: <ref>" then "Digest: sha256:<hex>".
_DIGEST = re.compile(r"^Digest: (sha256:[0-9a-f]{64})$", re.MULTILINE)


class HelmError(PipelineError):
    """helm is missing, or refused to package or push a chart."""


@dataclass(frozen=True)
class Helm:
    binary: str

    @classmethod
    def find(cls, why: str) -> Helm:
        binary = shutil.which("helm")
        if binary is None:
            msg = f"{why}, but there is no helm on PATH (helm 3.8 or later pushes charts to OCI registries; CI installs one with .ci/helm)"
            raise HelmError(msg)
        return cls(binary)

    def package(self, chart: Path, destination: Path) -> Path:
        """The chart directory as <name>-<version>.tgz in `destination`. Helm stamps each
        entry with its file's time, so equal files with equal times give equal bytes."""
        before = set(destination.iterdir())
        try:
            run([self.binary, "package", chart, "--destination", destination], what=f"helm package {chart.name}")
        except ToolError as error:
            raise HelmError(str(error)) from None
        (made,) = set(destination.iterdir()) - before
        return made

    def push(self, package: Path, remote: str, *, plain_http: bool) -> str:
        """Push to `remote` (oci://host/path); the digest of the manifest the registry stored."""
        argv: list[str | Path] = [self.binary, "push", package, remote, *(["--plain-http"] if plain_http else [])]
        try:
            result = run(argv, what=f"helm push {package.name} {remote}")
        except ToolError as error:
            raise HelmError(str(error)) from None
        found = _DIGEST.search(result.stdout + result.stderr)
        if found is None:
            msg = f"helm push {package.name} {remote} said nothing of the digest it pushed: {(result.stdout + result.stderr).strip()[-300:]}"
            raise HelmError(msg)
        return found[1]
