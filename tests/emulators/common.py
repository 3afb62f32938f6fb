"""What every provider emulator shares: a loopback threaded HTTP server, routing, recording,
injected errors, counters and a real rate limiter.

An emulator is a small stand-in for one provider's HTTP API, for end-to-end tests through real
workers (which run in other processes, so ``responses`` cannot stand in). It shares NO code with
``connectors/``: it knows the provider from the provider's documentation only.

A subclass declares its routes and answers::

    class Acme(Emulator):
        name = "acme"

        def routes(self) -> list[Route]:
            return [Route("GET", r"/v1/things/(?P<id>\\w+)", self.get_thing, "get_thing")]

        def get_thing(self, req: Request, id: str) -> Response:
            return Response.json({"id": id})

    with Acme().start() as emu:
        emu.url                         # http://127.0.0.1:PORT

Control endpoints (also callable in-process: :meth:`Emulator.inject`, :meth:`Emulator.stats`,
:meth:`Emulator.recorded`):

- ``POST /_emulator/inject`` ``{"kind": NAME, "times": 1, "route": ROUTE_NAME}`` queues an error
  the emulator knows by name (:meth:`Emulator.injected`), or ``{"status", "headers", "body"}`` a
  raw answer, or ``{"kind": "drop"}`` (the connection is closed without an answer). ``route``
  (optional) limits it to requests of that route; ``times`` to that many requests; ``headers``
  given with a ``kind`` replace the answer's (another ``Retry-After``).
- ``GET /_emulator/stats``: ``{"requests", "rate_limited", "injected", "created", "routes": {}}``.
- ``GET /_emulator/requests``: every request recorded (method, path, query, headers, body,
  route, and ``at``: when it arrived, wall-clock seconds).
- ``POST /_emulator/reset``: forgets recordings, counters and queued injections.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Emulator", "Limiter", "Request", "Response", "Route"]

MAX_BODY = 1 << 20


@dataclass
class Request:
    """One request as the emulator read it."""

    method: str
    path: str  # percent-decoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    origin: str  # http://127.0.0.1:PORT
    raw_path: str = ""  # as sent (routes match it; their groups are decoded)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body as JSON (``None`` when empty or not JSON)."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` (first value of each name)."""
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def record(self) -> dict[str, Any]:
        """The request as ``/_emulator/requests`` shows it."""
        body: Any = self.json()
        if body is None and self.body:
            body = self.body.decode("utf-8", "replace")
        return {
            "method": self.method,
            "path": self.path,
            "query": {k: v[0] if len(v) == 1 else v for k, v in self.query.items()},
            "headers": dict(self.headers),
            "body": body,
        }


@dataclass
class Response:
    """One answer: status, headers and a body (JSON-encoded unless bytes or str)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False

    @classmethod
    def json(cls, body: Any, status: int = 200, **headers: str) -> Response:
        """A JSON answer."""
        return cls(status, body, {"Content-Type": "application/json", **headers})

    def encoded(self) -> bytes:
        """The body as bytes."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Route:
    """``method`` and a full-match path regex; named groups become keyword arguments."""

    method: str
    pattern: str
    handler: Callable[..., Response]
    name: str


class Limiter:
    """A fixed window of ``limit`` requests per ``window`` seconds, per key (a real limit: the
    rate-limit headers an emulator sends are computed from it)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str = "") -> tuple[bool, int, float]:
        """Count one request: (allowed, remaining after it, seconds until the window resets)."""
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            allowed = used < self.limit
            if allowed:
                used += 1
            self._windows[key] = (start, used)
            return allowed, max(self.limit - used, 0), max(start + self.window - now, 0.0)


class Emulator:
    """Base of a provider emulator: subclasses set ``name`` and implement :meth:`routes`."""

    name = "emulator"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.url = ""
        self.requests: list[dict[str, Any]] = []
        self.counters: Counter[str] = Counter()
        self.per_route: Counter[str] = Counter()
        self._injections: deque[dict[str, Any]] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._compiled = [(r, re.compile(r.pattern)) for r in self.routes()]

    # -- what subclasses provide ---------------------------------------------------------

    def routes(self) -> list[Route]:
        """The provider's endpoints."""
        return []

    def injected(self, kind: str, req: Request) -> Response:
        """The answer for an injected error class ``kind`` (subclasses know their provider's)."""
        raise ValueError(f"{self.name} emulator has no injected error {kind!r}")

    def reset_state(self) -> None:
        """Forget the provider's data (subclasses); called by ``POST /_emulator/reset``."""

    # -- in-process control --------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free loopback port and serve on a daemon thread."""
        emulator = self

        class Handler(_Handler):
            pass

        Handler.emulator = emulator
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(
        self,
        kind: str | None = None,
        *,
        times: int = 1,
        route: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Queue an error for the next ``times`` requests (of ``route`` when given)."""
        if kind is None and status is None:
            raise ValueError("inject needs a kind or a status")
        with self.lock:
            self._injections.append(
                {
                    "kind": kind,
                    "times": times,
                    "route": route,
                    "status": status,
                    "headers": headers or {},
                    "body": body,
                }
            )

    def stats(self) -> dict[str, Any]:
        """Counters: requests, rate_limited (429s), injected, created, per route."""
        with self.lock:
            out: dict[str, Any] = {
                k: self.counters.get(k, 0)
                for k in ("requests", "rate_limited", "injected", "created")
            }
            out.update({k: v for k, v in self.counters.items() if k not in out})
            out["routes"] = dict(self.per_route)
            return out

    def recorded(self, route: str | None = None) -> list[dict[str, Any]]:
        """The recorded requests (those of ``route`` when given)."""
        with self.lock:
            return [dict(r) for r in self.requests if route is None or r["route"] == route]

    def reset(self) -> None:
        """Forget recordings, counters, queued injections and (subclasses) the data."""
        with self.lock:
            self.requests.clear()
            self.counters.clear()
            self.per_route.clear()
            self._injections.clear()
            self.reset_state()

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """Route one request: control endpoints, injected errors, then the provider's routes."""
        if req.path.startswith("/_emulator/"):
            return self._control(req)
        route, groups = self._match(req)
        with self.lock:
            record = req.record()
            record["route"] = route.name if route else None
            record["at"] = time.time()  # wall clock, for tests comparing waits
            self.requests.append(record)
            self.counters["requests"] += 1
            if route:
                self.per_route[route.name] += 1
            injection = self._take_injection(route.name if route else None)
        if injection is not None:
            response = self._injected_response(injection, req)
        elif route is None:
            response = self.not_found(req)
        else:
            response = route.handler(req, **groups)
        if response.status == 429:
            with self.lock:
                self.counters["rate_limited"] += 1
        return response

    def not_found(self, req: Request) -> Response:
        """The answer to an unknown path (subclasses use their provider's error shape)."""
        return Response.json({"error": f"no route {req.method} {req.path}"}, 404)

    def _match(self, req: Request) -> tuple[Route | None, dict[str, str]]:
        for route, regex in self._compiled:
            m = regex.fullmatch(req.raw_path or req.path)
            if m and route.method == req.method:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
        return None, {}

    def _take_injection(self, route: str | None) -> dict[str, Any] | None:
        for item in self._injections:
            if item["route"] is None or item["route"] == route:
                item["times"] -= 1
                if item["times"] <= 0:
                    self._injections.remove(item)
                self.counters["injected"] += 1
                return item
        return None

    def _injected_response(self, item: dict[str, Any], req: Request) -> Response:
        if item["kind"] == "drop":
            return Response(drop=True)
        if item["kind"] is not None:
            response = self.injected(item["kind"], req)
            response.headers.update(item["headers"])  # e.g. another Retry-After
            return response
        headers = {"Content-Type": "application/json", **item["headers"]}
        return Response(int(item["status"]), item["body"], headers)

    def _control(self, req: Request) -> Response:
        if req.path == "/_emulator/inject" and req.method == "POST":
            spec = req.json() or {}
            try:
                self.inject(
                    spec.get("kind"),
                    times=int(spec.get("times", 1)),
                    route=spec.get("route"),
                    status=spec.get("status"),
                    headers=spec.get("headers"),
                    body=spec.get("body"),
                )
            except ValueError as exc:
                return Response.json({"error": str(exc)}, 400)
            return Response.json({"queued": True})
        if req.path == "/_emulator/stats" and req.method == "GET":
            return Response.json(self.stats())
        if req.path == "/_emulator/requests" and req.method == "GET":
            return Response.json(self.recorded(req.arg("route")))
        if req.path == "/_emulator/reset" and req.method == "POST":
            self.reset()
            return Response.json({"reset": True})
        return Response.json({"error": f"no control endpoint {req.method} {req.path}"}, 404)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the recordings instead."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        parts = urlsplit(self.path)
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        req = Request(
            method=self.command,
            path=unquote(parts.path),
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            origin="http://" + host,
            raw_path=parts.path,
        )
        try:
            response = self.emulator.handle(req)
        except Exception as exc:  # a bug in the emulator: say so rather than hang the client
            response = Response.json({"error": f"emulator bug: {exc!r}"}, 500)
        if response.drop:
            self.close_connection = True
            return
        payload = response.encoded()
        self.send_response(response.status, _reason(response.status))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
