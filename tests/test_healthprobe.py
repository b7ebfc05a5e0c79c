"""The health probe an http service's image runs (`service-health`): against a real HTTP
server on loopback, what it exits with for each kind of answer. A failure a starting app gives
(nothing listening yet, 503) is one to wait out; an answer an app that is up gives again and
again (404: a path it does not serve) is settled, so verify-image stops at once."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from monorepo import free_port

from wheelpipe import healthprobe


@pytest.fixture
def answering(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, dict[str, int]]]:
    """A server on a free loopback port answering each path with the status `statuses` maps it
    to; its port (in PROBE_PORT, as an image sets the service's port variable) and that map."""
    statuses: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(statuses.get(self.path, 404))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("PROBE_PORT", str(server.server_address[1]))
    try:
        yield server.server_address[1], statuses
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "code"),
    [(200, 0), (302, 0), (503, 1), (500, 1), (404, healthprobe.SETTLED_EXIT), (405, healthprobe.SETTLED_EXIT), (401, healthprobe.SETTLED_EXIT)],
)
def test_the_probe_exits_by_what_the_app_answered(answering: tuple[int, dict[str, int]], capsys: pytest.CaptureFixture[str], status: int, code: int) -> None:
    port, statuses = answering
    statuses["/healthz"] = status
    assert healthprobe.main(["PROBE_PORT", "1", "/healthz"]) == code
    said = capsys.readouterr().err
    assert said == ("" if code == 0 else f"health probe: GET http://127.0.0.1:{port}/healthz answered {status}\n")


def test_nothing_listening_yet_is_waited_out_not_settled(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PROBE_PORT", str(free_port()))
    assert healthprobe.main(["PROBE_PORT", "1", "/healthz"]) == 1
    assert "failed (" in capsys.readouterr().err


def test_a_port_variable_that_is_no_port_is_settled(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PROBE_PORT", "eighty")
    assert healthprobe.main(["PROBE_PORT", "1", "/healthz"]) == healthprobe.SETTLED_EXIT
    assert capsys.readouterr().err == "health probe: PROBE_PORT='eighty' is not a port number\n"
