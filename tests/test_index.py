"""The index client against a real HTTP server on loopback: what it retries, and what it never does."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from wheelpipe import index
from wheelpipe.errors import PackageIndexError

PAGE = b'<html><body><a href="demo-1.0-py3-none-any.whl#sha256=' + b"a" * 64 + b'">demo-1.0-py3-none-any.whl</a></body></html>'


@contextmanager
def serving(statuses: list[int]) -> Iterator[tuple[str, list[int]]]:
    """An index that answers each request with the next status (200: the page), then 200."""
    seen: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            status = statuses[len(seen)] if len(seen) < len(statuses) else 200
            seen.append(status)
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            if status == 200:
                self.wfile.write(PAGE)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "_PAUSES", (0.0, 0.0))


def test_a_gateway_that_fails_twice_then_answers_is_asked_again() -> None:
    with serving([503, 502]) as (url, seen):
        files = index.project_files(url, "demo")
    assert seen == [503, 502, 200]
    assert files is not None and [f.filename for f in files] == ["demo-1.0-py3-none-any.whl"]


def test_a_gateway_that_keeps_failing_is_one_line_after_three_attempts() -> None:
    with serving([503, 503, 503, 503]) as (url, seen), pytest.raises(PackageIndexError) as raised:
        index.project_files(url, "demo")
    assert seen == [503, 503, 503]
    assert "the index answered HTTP 503" in str(raised.value)


@pytest.mark.parametrize("status", [401, 403, 500])
def test_an_answer_that_is_no_passing_moment_is_never_asked_again(status: int) -> None:
    with serving([status]) as (url, seen), pytest.raises(PackageIndexError):
        index.project_files(url, "demo")
    assert seen == [status]


def test_a_missing_project_is_none_at_once() -> None:
    with serving([404]) as (url, seen):
        assert index.project_files(url, "demo") is None
    assert seen == [404]
