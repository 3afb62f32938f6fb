"""HTTP plumbing: read a request, route it, write the answer in one send.

Speed matters (the fleet's benchmarks drive the sandbox hard), so each answer, status line,
headers and body, goes out in a single ``write`` on a socket with Nagle's algorithm off, the
``Date`` header is computed once a second, and nothing is logged.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from spark_integrations.sandbox import api, control, oauth
from spark_integrations.sandbox.common import Request, Response, error

if TYPE_CHECKING:
    from spark_integrations.sandbox.core import Sandbox
    from spark_integrations.sandbox.server import SandboxHTTPServer

__all__ = ["MAX_BODY", "SandboxRequestHandler", "route"]

MAX_BODY = 1 << 20

Route = Callable[["Sandbox", Request], Response]

_ROUTES: dict[str, dict[str, Route]] = {
    "/oauth/authorize": {"GET": lambda sb, req: oauth.authorize(sb.tokens, sb.options, req)},
    "/oauth/token": {"POST": lambda sb, req: oauth.token(sb.tokens, sb.options, req)},
    "/_sandbox/health": {"GET": control.health},
    "/_sandbox/stats": {"GET": control.stats},
    "/_sandbox/reset": {"POST": control.reset},
    "/_sandbox/messages": {"GET": control.messages},
    "/_sandbox/revoke": {"POST": control.revoke},
    "/_sandbox/faults": {"POST": control.faults},
    "/_sandbox/hold": {"POST": control.hold},
    "/_sandbox/update": {"POST": control.update},
    "/_sandbox/replica": {"POST": control.replica},
}

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_date_cache: tuple[int, str] = (0, "")


def _date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def route(sb: Sandbox, req: Request) -> Response:
    """The answer to ``req``: the API, OAuth or control endpoints, else 404 or 405.

    API and token requests first pass the gate, where they wait while their scope is held.
    """
    if req.path.startswith("/v1/"):
        sb.gate.pass_through("api")
        return api.handle(sb, req)
    if req.path == "/oauth/token":
        sb.gate.pass_through("token")
    methods = _ROUTES.get(req.path)
    if methods is None:
        return error(404, "not_found", f"no such path {req.path}")
    endpoint = methods.get(req.method)
    if endpoint is None:
        response = error(405, "method_not_allowed", f"{req.method} is not allowed here")
        response.headers.append(("Allow", ", ".join(methods)))
        return response
    return endpoint(sb, req)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """One keep-alive connection; each request becomes a :class:`Request` for :func:`route`."""

    protocol_version = "HTTP/1.1"
    server_version = "sandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 120
    server: SandboxHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: logging costs throughput and the tests read counters instead."""

    def do_GET(self) -> None:
        """Answer GET."""
        self._handle()

    def do_POST(self) -> None:
        """Answer POST."""
        self._handle()

    def do_PUT(self) -> None:
        """Answer PUT (405 on every known path)."""
        self._handle()

    def do_PATCH(self) -> None:
        """Answer PATCH (405 on every known path)."""
        self._handle()

    def do_DELETE(self) -> None:
        """Answer DELETE (405 on every known path)."""
        self._handle()

    def _read_body(self) -> bytes | Response:
        """The body, or the error answer; unread bodies close the connection after answering."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return error(400, "invalid_request", "bad Content-Length")
        if length > MAX_BODY:
            # Read and drop it (up to a point): closing with unread data resets the connection,
            # and the client could lose the 413 answer.
            if length > 64 * MAX_BODY:
                self.close_connection = True
            while length > 0 and not self.close_connection:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    self.close_connection = True
                length -= len(chunk)
            return error(413, "payload_too_large", f"bodies are limited to {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | Response:
        parts: list[bytes] = []
        total = 0
        try:
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    return error(
                        413, "payload_too_large", f"bodies are limited to {MAX_BODY} bytes"
                    )
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        except ValueError:
            self.close_connection = True
            return error(400, "invalid_request", "bad chunked encoding")

    def _handle(self) -> None:
        body = self._read_body()
        if isinstance(body, Response):
            self._write(body)
            return
        raw_path, _, query_text = self.path.partition("?")
        path = unquote(raw_path)
        query: dict[str, str] = {}
        for name, value in parse_qsl(query_text, keep_blank_values=True):
            query.setdefault(name, value)
        host = self.headers.get("Host") or f"{self.server.server_name}:{self.server.server_port}"
        req = Request(self.command, path, query, self.headers, body, "http://" + host)
        try:
            response = route(self.server.sandbox, req)
        except Exception:  # a bug in the sandbox: answer 500 rather than cut the connection
            traceback.print_exc(file=sys.stderr)
            response = error(500, "sandbox_bug", "unexpected error in the sandbox")
        self._write(response)

    def _write(self, response: Response) -> None:
        if response.drop:
            # No answer at all: the server closes the socket once this request returns.
            self.close_connection = True
            return
        status = response.status
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
            f"Server: sandbox/1.0\r\nDate: {_date()}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
        ]
        lines.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        try:
            self.wfile.write("".join(lines).encode("latin-1") + response.body)
        except OSError:
            self.close_connection = True
