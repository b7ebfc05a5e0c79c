import http.server
import socket
import threading

import pytest

from service_runtime import WORKERS_ENV, ServiceSpec, cli


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def hello_factory():
    return hello_app


# Two services that differ in every declared value, so nothing can be hard-coded.
SPECS = [
    ServiceSpec(prog="order-manager", port_env="ORDER_MANAGER_PORT", default_port=8001, host_env="ORDER_MANAGER_HOST", app_factory=hello_factory),
    ServiceSpec(prog="stock-api", port_env="STOCK_PORT", default_port=9100, host_env="STOCK_BIND_HOST", app_factory=lambda: hello_app),
]


@pytest.fixture(params=SPECS, ids=[s.prog for s in SPECS])
def spec(request, monkeypatch):
    for name in (request.param.port_env, request.param.host_env, WORKERS_ENV):
        monkeypatch.delenv(name, raising=False)
    return request.param


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
    monkeypatch.setattr(cli, "serve", lambda app_factory, bind, workers: calls.append((app_factory, bind, workers)))
    return calls
