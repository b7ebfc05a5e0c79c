import os
import subprocess
import sys
from pathlib import Path

import pytest

from service_runtime import run_service

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("command", [[], ["serve"], ["healthcheck"]])
def test_bad_port_is_rejected_before_doing_anything(monkeypatch, spec, served, command):
    monkeypatch.setenv(spec.port_env, "http")

    with pytest.raises(SystemExit) as excinfo:
        run_service(spec, command)

    assert excinfo.value.code == 2
    assert served == []


def test_bad_worker_count_is_rejected_before_serving(monkeypatch, spec, served):
    monkeypatch.setenv("WEB_CONCURRENCY", "0")

    with pytest.raises(SystemExit) as excinfo:
        run_service(spec, ["serve"])

    assert excinfo.value.code == 2
    assert served == []


def test_unknown_command_is_a_usage_error(spec, served, capsys):
    with pytest.raises(SystemExit) as excinfo:
        run_service(spec, ["restart"])

    assert excinfo.value.code == 2
    assert capsys.readouterr().err.startswith(f"usage: {spec.prog} ")
    assert served == []


def test_help_names_the_port_variable_and_default(spec, capsys):
    with pytest.raises(SystemExit) as excinfo:
        run_service(spec, ["--help"])

    assert excinfo.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"Serve the {spec.prog.replace('-', ' ')} with gunicorn on ${spec.port_env} (default {spec.default_port})" in out


def test_serve_is_the_default_command(spec, served):
    assert run_service(spec, []) == 0
    assert served == [(spec.app_factory, f"0.0.0.0:{spec.default_port}", 2)]


def test_serve_binds_host_and_port_from_env(monkeypatch, spec, served):
    monkeypatch.setenv(spec.host_env, "127.0.0.1")
    monkeypatch.setenv(spec.port_env, "9000")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")

    assert run_service(spec, ["serve"]) == 0

    assert served == [(spec.app_factory, "127.0.0.1:9000", 3)]


def test_serve_brackets_an_ipv6_host(monkeypatch, spec, served):
    monkeypatch.setenv(spec.host_env, "::")

    run_service(spec, ["serve"])

    assert served == [(spec.app_factory, f"[::]:{spec.default_port}", 2)]


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (500, 1)])
def test_healthcheck_command_probes_the_configured_port(monkeypatch, spec, served, serving_healthz, status, exit_code):
    monkeypatch.setenv(spec.port_env, str(serving_healthz(status)))

    assert run_service(spec, ["healthcheck"]) == exit_code
    assert served == []


# In a fresh interpreter: what a command imports, and how it exits, from a clean start.
PROBE = """
import sys
from service_runtime import ServiceSpec, run_service
spec = ServiceSpec(prog="probe", port_env="PROBE_PORT", default_port=1, host_env="PROBE_HOST", app_factory=dict)
try:
    code = run_service(spec, sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print(code, *sorted(name for name in ("flask", "gunicorn") if name in sys.modules))
"""


def run_probe(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("PROBE_PORT", "WEB_CONCURRENCY")}
    environment.update(env, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-c", PROBE, *command], env=environment, capture_output=True, text=True, timeout=60, check=False)


def test_healthcheck_imports_neither_gunicorn_nor_flask(unused_port):
    probe = run_probe(["healthcheck"], PROBE_PORT=str(unused_port))

    assert probe.stdout.split() == ["1"]


def test_bad_worker_count_is_one_line_not_a_gunicorn_traceback():
    # gunicorn parses WEB_CONCURRENCY when imported: it must not be imported before the check.
    probe = run_probe(["serve"], WEB_CONCURRENCY="many")

    assert probe.stdout.split() == ["2"]
    assert probe.stderr == "probe: error: WEB_CONCURRENCY must be an integer from 1 to 1024, got 'many'\n"
