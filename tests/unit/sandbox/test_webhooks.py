"""Outgoing webhooks: Standard Webhooks signatures, retries with the same id, giving up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from spark_integrations.sandbox import webhooks as sandbox_webhooks
from tests.unit.sandbox.conftest import StartSandbox
from tests.unit.sandbox.helpers import stats, wait_for

KEY = secrets.token_bytes(24)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers 500 to the first ``failures`` of them."""

    daemon_threads = True

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status = 500 if len(self.server.received) <= self.server.failures else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(getattr(request, "param", 0))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def verify(headers: dict[str, str], body: bytes) -> bool:
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(sig.partition(",")[2], expected)
        for sig in headers["webhook-signature"].split()
        if sig.startswith("v1,")
    )


def test_message_created_event_is_signed(
    start_sandbox: StartSandbox, api: requests.Session, receiver: Receiver
) -> None:
    srv = start_sandbox(webhook_url=receiver.url, webhook_secret=SECRET)
    with api.post(srv.url + "/v1/messages", json={"text": "hook me"}) as answer:
        message = answer.json()
    wait_for(lambda: stats(srv.url)["webhooks_sent"] == 1)
    [(headers, body)] = receiver.received
    assert headers["webhook-id"].startswith("msg_")
    assert headers["webhook-timestamp"].isdigit()
    assert headers["content-type"] == "application/json"
    assert verify(headers, body)
    assert not verify({**headers, "webhook-timestamp": "1"}, body)
    event = json.loads(body)
    assert event["type"] == "message.created" and event["timestamp"]
    assert event["data"] == message


@pytest.mark.parametrize("receiver", [1], indirect=True)
def test_failed_delivery_is_retried_with_the_same_id(
    start_sandbox: StartSandbox, api: requests.Session, receiver: Receiver
) -> None:
    srv = start_sandbox(webhook_url=receiver.url, webhook_secret=SECRET)
    with api.post(srv.url + "/v1/messages", json={"text": "retry me"}) as answer:
        assert answer.status_code == 201
    wait_for(lambda: stats(srv.url)["webhooks_sent"] == 1)
    first, second = receiver.received
    assert first[0]["webhook-id"] == second[0]["webhook-id"]
    assert first[1] == second[1] and verify(*second)
    counters = stats(srv.url)
    assert counters["webhook_attempts"] == 2 and counters["webhooks_failed"] == 0


@pytest.mark.parametrize("receiver", [100], indirect=True)
def test_delivery_gives_up_after_five_attempts(
    start_sandbox: StartSandbox,
    api: requests.Session,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox_webhooks, "BACKOFF", (0.01, 0.01, 0.01, 0.01))
    srv = start_sandbox(webhook_url=receiver.url, webhook_secret=SECRET)
    with api.post(srv.url + "/v1/messages", json={"text": "doomed"}) as answer:
        assert answer.status_code == 201
    wait_for(lambda: stats(srv.url)["webhooks_failed"] == 1)
    assert len(receiver.received) == 5
    assert len({h["webhook-id"] for h, _ in receiver.received}) == 1
    assert stats(srv.url)["webhooks_sent"] == 0


def test_unreachable_receiver_counts_as_failure(
    start_sandbox: StartSandbox, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_webhooks, "BACKOFF", (0.01, 0.01, 0.01, 0.01))
    srv = start_sandbox(webhook_url="http://127.0.0.1:9/hook", webhook_secret=SECRET)
    with api.post(srv.url + "/v1/messages", json={"text": "nowhere"}) as answer:
        assert answer.status_code == 201
    wait_for(lambda: stats(srv.url)["webhooks_failed"] == 1)
    assert stats(srv.url)["webhook_attempts"] == 5
