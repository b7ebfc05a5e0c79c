import pytest

from service_runtime import healthcheck


def test_healthcheck_passes_on_200(serving_healthz):
    assert healthcheck(serving_healthz(200), prog="demo") == 0


@pytest.mark.parametrize("status", [404, 500, 503])
def test_healthcheck_fails_on_any_other_status_naming_it(serving_healthz, capsys, status):
    assert healthcheck(serving_healthz(status), prog="demo") == 1
    err = capsys.readouterr().err
    assert err.startswith("demo: healthcheck: ") and f"answered {status}" in err


def test_healthcheck_fails_when_nothing_listens(unused_port, capsys):
    assert healthcheck(unused_port, prog="demo", timeout=1) == 1
    assert f"http://127.0.0.1:{unused_port}/healthz" in capsys.readouterr().err


def test_healthcheck_ignores_proxy_settings(monkeypatch, serving_healthz, unused_port):
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{unused_port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    assert healthcheck(serving_healthz(200), prog="demo") == 0
