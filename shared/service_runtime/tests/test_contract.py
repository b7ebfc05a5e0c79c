"""Every http service of this monorepo that serves through service_runtime serves exactly what
its [tool.wheelpipe.service] table declares (the table drives images and compose; the script's
ServiceSpec drives the process), so the two declarations cannot drift apart. (A worker
declares no port.) A test of this package's contract with the services, so it lives here."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest
from service_runtime import ServiceSpec

from wheelpipe import load_repository
from wheelpipe.model import HttpService

# shared/service_runtime/tests/ -> the monorepo's root.
REPO = load_repository(Path(__file__).resolve().parents[3])


@pytest.mark.parametrize("service", sorted(s for s, p in REPO.services.items() if isinstance(p.service, HttpService)))
def test_console_script_spec_matches_the_declared_service(service):
    package = REPO.services[service]
    scripts = tomllib.loads((package.path / "pyproject.toml").read_text())["project"]["scripts"]
    (command,) = package.service.command  # the console script alone: service_runtime parses the rest
    module_name, _, function = scripts[command].partition(":")
    module = importlib.import_module(module_name)
    assert function == "main" and callable(module.main)
    spec = module.SPEC
    assert isinstance(spec, ServiceSpec)
    assert (spec.prog, spec.port_env, spec.default_port) == (command, package.service.port_env, package.service.port)
    assert spec.host_env == package.service.port_env.replace("_PORT", "_HOST")
    assert spec.app_factory is importlib.import_module(module_name.rpartition(".")[0]).create_app
