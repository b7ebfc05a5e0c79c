"""The checksum of a text, from the compiled shared package: printed for the words it is given,
else served over HTTP (GET /checksum?text=..., and /healthz, which answers from the compiled
code too, so a health check proves the extension loads on the image's architecture)."""

import os
import platform
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from wheelpipe_fixture_native import checksum_text


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            body = f"ok {platform.machine()} {checksum_text('Wikipedia')}\n"
        elif url.path == "/checksum":
            body = checksum_text(parse_qs(url.query).get("text", [""])[0]) + "\n"
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    if sys.argv[1:]:
        print(checksum_text(" ".join(sys.argv[1:])))
        return
    port = int(os.environ.get("CHECKSUM_SERVICE_PORT", "8080"))
    ThreadingHTTPServer(("0.0.0.0", port), _Handler).serve_forever()  # noqa: S104 - in its container, for the port it publishes
