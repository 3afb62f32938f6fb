"""Control endpoints, routing errors and connection handling."""

from __future__ import annotations

import socket

import pytest
import requests

from spark_integrations.sandbox import SandboxOptions, SandboxServer
from tests.unit.sandbox.helpers import RECORDS, stats

REQUIRED = {
    "requests", "rate_limited", "faults_injected", "token_refreshes", "invalid_grants",
    "idempotent_replays", "messages_created", "tokens_issued", "client_credentials_grants",
    "authorization_codes", "items_updated", "webhooks_sent", "webhooks_failed", "records",
}  # fmt: skip


def test_stats_and_reset(sandbox: SandboxServer, api: requests.Session) -> None:
    counters = stats(sandbox.url)
    assert set(counters) >= REQUIRED
    assert counters["records"] == RECORDS and counters["requests"] == 0
    with api.post(f"{sandbox.url}/v1/messages", json={"text": "kept"}) as answer:
        assert answer.status_code == 201
    with api.get(f"{sandbox.url}/v1/items") as answer:
        assert answer.status_code == 200
    counters = stats(sandbox.url)
    assert counters["requests"] == 2 and counters["messages_created"] == 1
    with api.post(f"{sandbox.url}/_sandbox/reset") as answer:
        assert answer.json() == {"ok": True}
    counters = stats(sandbox.url)
    assert counters["records"] == RECORDS
    assert all(v == 0 for k, v in counters.items() if k != "records")
    # Data stays.
    with api.get(f"{sandbox.url}/_sandbox/messages") as answer:
        assert [m["text"] for m in answer.json()] == ["kept"]
    with api.get(f"{sandbox.url}/_sandbox/health") as answer:
        assert answer.json() == {"ok": True}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/v1/nowhere", 404),
        ("GET", "/v1/items/a/b", 404),
        ("POST", "/v1/items", 405),
        ("DELETE", "/v1/messages", 405),
        ("GET", "/oauth/token", 405),
        ("POST", "/_sandbox/stats", 405),
        ("PUT", "/_sandbox/reset", 405),
    ],
)
def test_unknown_path_404_wrong_method_405(
    sandbox: SandboxServer, api: requests.Session, method: str, path: str, status: int
) -> None:
    with api.request(method, sandbox.url + path) as answer:
        assert answer.status_code == status
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json()["error"] in ("not_found", "method_not_allowed")
        if status == 405:
            assert answer.headers["Allow"]


def test_keep_alive_serves_many_requests_on_one_connection(sandbox: SandboxServer) -> None:
    with socket.create_connection((sandbox.host, sandbox.port), timeout=10) as conn:
        request = b"GET /_sandbox/health HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.sendall(request * 3)
        data = b""
        while data.count(b'{"ok":true}') < 3:
            chunk = conn.recv(65536)
            assert chunk, "the server closed a keep-alive connection"
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3


def test_oversized_bodies_are_413_and_chunked_bodies_accepted(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    with api.post(f"{sandbox.url}/v1/messages", data=b"x" * ((1 << 20) + 1)) as answer:
        assert answer.status_code == 413
    # The connection survives the refused body.
    with api.post(f"{sandbox.url}/v1/messages", data=iter([b'{"text":', b'"x"}'])) as answer:
        assert answer.status_code == 201 and answer.json()["text"] == "x"
    with api.get(f"{sandbox.url}/v1/items/item%2D000001") as answer:
        assert answer.status_code == 200


def test_stop_cuts_idle_connections_and_is_idempotent(http: requests.Session) -> None:
    server = SandboxServer(SandboxOptions(port=0, records=10)).start()
    with http.get(f"{server.url}/_sandbox/health") as answer:
        assert answer.status_code == 200
    server.stop()
    server.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(f"{server.url}/_sandbox/health", timeout=5)


def test_context_manager_and_properties() -> None:
    server = SandboxServer(SandboxOptions(port=0, records=0))
    with pytest.raises(RuntimeError):
        _ = server.url
    with server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        assert server.sandbox.stats_snapshot()["records"] == 0
