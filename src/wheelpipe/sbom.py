"""CycloneDX SBOMs of the services, generated from their install manifests.

The manifest is what an image or an offline install holds, so the SBOM lists exactly
that: every pinned distribution with its version, purl and the sha256 of its wheel.
Serial number and timestamp derive from the content and the commit, so the same
release gives the same SBOM.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from .errors import PipelineError
from .lockfile import parse_pins_text
from .model import Repository
from .target import Target
from .wheelhouse import Wheelhouse

SCHEMA = SchemaVersion.V1_6
_NAMESPACE = uuid.UUID("6f1d4c38-9a5e-4f53-a3f4-6b1f0c0de5b0")  # fixed: serial numbers are content-derived


class SbomError(PipelineError):
    """An SBOM could not be produced or does not validate."""


def service_sbom(repo: Repository, house: Wheelhouse, service: str, manifest: str, timestamp: int, path: str, platform: Target | None = None) -> str:  # noqa: PLR0913 - the manifest, where it is, and for which platform
    """The CycloneDX JSON document of one service's install manifest (its text, as shipped, at
    `path` in the wheelhouse); with several platforms, the platform it installs on is a property
    of the service's component."""
    pins = parse_pins_text(manifest, f"wheelhouse/{path}")
    by_hash = {e.sha256: e for e in house.entries.values()}
    package = repo.service(service)
    components = []
    for pin in pins.values():
        (digest,) = pin.hashes
        entry = by_hash[digest]
        purl = PackageURL(type="pypi", name=pin.name, version=pin.version, qualifiers={"file_name": entry.file})
        component = Component(
            name=pin.name,
            version=pin.version,
            type=ComponentType.APPLICATION if pin.name == package.name else ComponentType.LIBRARY,
            purl=purl,
            bom_ref=purl.to_string(),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
            properties=[Property(name="wheelpipe:origin", value=entry.origin.kind)],
        )
        components.append(component)
    root = next(c for c in components if c.name == package.name)
    if platform is not None:
        root.properties.add(Property(name="wheelpipe:platform", value=platform.platform))
    bom = Bom(
        components=[c for c in components if c is not root],
        serial_number=uuid.uuid5(_NAMESPACE, f"{service}:{hashlib.sha256(manifest.encode()).hexdigest()}"),
        metadata=BomMetaData(component=root, timestamp=datetime.fromtimestamp(timestamp, timezone.utc)),
    )
    # The application depends on everything it installs; the manifest is the whole closure.
    bom.dependencies.add(Dependency(ref=root.bom_ref, dependencies=[Dependency(ref=c.bom_ref) for c in components if c is not root]))
    document = make_outputter(bom, OutputFormat.JSON, SCHEMA).output_as_string(indent=2) + "\n"
    validate(document, f"the SBOM of {service}")
    return document


def validate(document: str, label: str) -> None:
    """Against the CycloneDX JSON schema (offline: the library ships it)."""
    error = JsonStrictValidator(SCHEMA).validate_str(document)
    if error is not None:
        msg = f"{label} does not validate against CycloneDX {SCHEMA.to_version()}: {error}"
        raise SbomError(msg)
