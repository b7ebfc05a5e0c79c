import http.server
import socket
import threading

import pytest
from flask import Flask

from user_manager import server
from user_manager.gunicorn_app import GunicornApplication


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (server.PORT_ENV, server.HOST_ENV, server.WORKERS_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serving_healthz():
    """Start a real HTTP server on 127.0.0.1 whose /healthz answers a given status."""
    running = []

    def start(status: int) -> int:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status if self.path == "/healthz" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args):
                pass  # keep request lines out of the test output

        httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        running.append((httpd, thread))
        return httpd.server_address[1]

    yield start
    for httpd, thread in running:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(monkeypatch):
    """Record serve() calls instead of starting gunicorn."""
    calls = []
    monkeypatch.setattr(server, "serve", lambda bind, workers: calls.append((bind, workers)))
    return calls


def test_port_defaults_to_8002():
    assert server.read_port() == 8002


@pytest.mark.parametrize(("raw", "port"), [("1", 1), ("8080", 8080), ("65535", 65535)])
def test_port_is_read_from_env(monkeypatch, raw, port):
    monkeypatch.setenv("USER_MANAGER_PORT", raw)

    assert server.read_port() == port


@pytest.mark.parametrize("raw", ["", "abc", "80.5", "0", "-1", "65536"])
def test_bad_port_exits_2_naming_the_variable(monkeypatch, capsys, raw):
    monkeypatch.setenv("USER_MANAGER_PORT", raw)

    with pytest.raises(SystemExit) as excinfo:
        server.read_port()

    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "USER_MANAGER_PORT" in err
    assert repr(raw) in err


@pytest.mark.parametrize("command", [[], ["serve"], ["healthcheck"]])
def test_main_rejects_bad_port_before_doing_anything(monkeypatch, served, command):
    monkeypatch.setenv("USER_MANAGER_PORT", "http")

    with pytest.raises(SystemExit) as excinfo:
        server.main(command)

    assert excinfo.value.code == 2
    assert served == []


def test_workers_default_to_2():
    assert server.read_workers() == 2


@pytest.mark.parametrize("raw", ["0", "many"])
def test_bad_worker_count_exits_2_naming_the_variable(monkeypatch, capsys, raw):
    monkeypatch.setenv("WEB_CONCURRENCY", raw)

    with pytest.raises(SystemExit) as excinfo:
        server.read_workers()

    assert excinfo.value.code == 2
    assert "WEB_CONCURRENCY" in capsys.readouterr().err


def test_serve_is_the_default_command(served):
    assert server.main([]) == 0
    assert served == [("0.0.0.0:8002", 2)]


def test_serve_binds_host_and_port_from_env(monkeypatch, served):
    monkeypatch.setenv("USER_MANAGER_HOST", "127.0.0.1")
    monkeypatch.setenv("USER_MANAGER_PORT", "9000")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")

    server.main(["serve"])

    assert served == [("127.0.0.1:9000", 3)]


def test_serve_brackets_an_ipv6_host(monkeypatch, served):
    monkeypatch.setenv("USER_MANAGER_HOST", "::")

    server.main(["serve"])

    assert served == [("[::]:8002", 2)]


def test_gunicorn_application_is_configured_for_the_container():
    application = GunicornApplication(bind="127.0.0.1:9000", workers=3)

    assert application.cfg.bind == ["127.0.0.1:9000"]
    assert application.cfg.workers == 3
    assert application.cfg.accesslog == "-"
    assert application.cfg.worker_tmp_dir is None
    assert isinstance(application.load(), Flask)


def test_healthcheck_passes_on_200(serving_healthz):
    assert server.healthcheck(serving_healthz(200)) == 0


def test_healthcheck_fails_on_500(serving_healthz, capsys):
    assert server.healthcheck(serving_healthz(500)) == 1
    assert "500" in capsys.readouterr().err


def test_healthcheck_fails_when_nothing_listens(unused_port):
    assert server.healthcheck(unused_port, timeout=1) == 1


def test_healthcheck_ignores_proxy_settings(monkeypatch, serving_healthz, unused_port):
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{unused_port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    assert server.healthcheck(serving_healthz(200)) == 0


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (500, 1)])
def test_healthcheck_command_probes_the_configured_port(
    monkeypatch, serving_healthz, status, exit_code
):
    monkeypatch.setenv("USER_MANAGER_PORT", str(serving_healthz(status)))

    assert server.main(["healthcheck"]) == exit_code
