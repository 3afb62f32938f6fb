"""POST /webhooks/{provider}/{connection_id}: each status the contract gives, over both stores.

Deliveries are signed with the ``standardwebhooks`` package; the event is read back from the
store and its task from the real broker (this machine's Redis).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from spark_integrations import metrics
from spark_integrations.constants import TASK_PROCESS_WEBHOOK
from spark_integrations.gateway import create_app
from spark_integrations.settings import Settings
from spark_integrations.settings_operations import Operations
from spark_integrations.store import SecretBox, session_scope
from spark_integrations.store.connections import remove_connection, update_connection
from tests.unit.gateway.conftest import PUBLIC_URL
from tests.unit.gateway.webhook_helpers import (
    BODY,
    UNREACHABLE_BROKER,
    add_hook_connection,
    close_gateway,
    events,
    gateway_fixture,  # noqa: F401 - the gateway fixture
    hook_settings_fixture,  # noqa: F401 - the hook_settings fixture
    no_secret_in,
    queued,
    signed,
)

pytestmark = pytest.mark.server

URL = "/webhooks/sandbox/{}"


class Counted:
    """What intake counted through :func:`metrics.count`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    def __call__(self, family: str, amount: float = 1.0, /, **labels: str) -> None:
        self.seen.append((family, labels))

    def outcomes(self) -> list[tuple[str, str, str]]:
        return [(x["provider"], x["outcome"], x["reason"]) for f, x in self.seen if f == "webhooks"]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    recorder = Counted()
    monkeypatch.setattr(metrics, "count", recorder)
    return recorder


def test_a_delivery_is_stored_then_queued_and_answered_202(
    gateway: TestClient, hook_settings: Settings, counted: Counted
) -> None:
    cid = add_hook_connection(hook_settings)
    body, headers = signed(msg_id="msg_first")
    answer = gateway.post(URL.format(cid), content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    reply = answer.json()
    assert reply == {"ok": True, "event_id": reply["event_id"], "duplicate": False}
    [event] = events(hook_settings)
    assert event.id == reply["event_id"]
    assert (event.connection_id, event.provider, event.delivery_id) == (cid, "sandbox", "msg_first")
    assert (event.status, event.event_type, event.payload) == ("received", "item.updated", BODY)
    assert event.enqueued_at is not None and event.attempts == 0
    assert queued(hook_settings) == [
        {
            "id": f"webhook-{event.id}",
            "task": TASK_PROCESS_WEBHOOK,
            "kwargs": {"event_id": event.id},
            "args": [],
        }
    ]
    assert counted.outcomes() == [("sandbox", "accepted", "none")]


def test_a_repeat_answers_2xx_as_a_duplicate_and_queues_nothing_new(
    gateway: TestClient, hook_settings: Settings, counted: Counted
) -> None:
    cid = add_hook_connection(hook_settings)
    body, headers = signed(msg_id="msg_again")
    first = gateway.post(URL.format(cid), content=body, headers=headers)
    again = gateway.post(URL.format(cid), content=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == {"ok": True, "event_id": first.json()["event_id"], "duplicate": True}
    assert len(events(hook_settings)) == 1
    assert len(queued(hook_settings)) == 1
    assert counted.outcomes() == [("sandbox", "accepted", "none"), ("sandbox", "duplicate", "none")]


def test_the_same_delivery_id_of_another_connection_is_another_event(
    gateway: TestClient, hook_settings: Settings
) -> None:
    one, two = add_hook_connection(hook_settings, "one"), add_hook_connection(hook_settings, "two")
    body, headers = signed(msg_id="msg_shared")
    ids = {gateway.post(URL.format(c), content=body, headers=headers).json()["event_id"]
           for c in (one, two)}  # fmt: skip
    assert len(ids) == 2 and len(events(hook_settings)) == 2


def test_repeats_sent_to_several_gateways_at_once_store_one_event(hook_settings: Settings) -> None:
    """Several gateway processes share only the store: its unique constraint decides."""
    cid = add_hook_connection(hook_settings)
    deliveries = [signed(msg_id=f"msg_race_{i}") for i in range(5)]
    gateways = [TestClient(create_app(hook_settings), base_url=PUBLIC_URL) for _ in range(3)]
    answers: list[dict[str, Any]] = []
    start = threading.Barrier(6)

    def post(client: TestClient) -> None:
        start.wait()
        for body, headers in deliveries:
            reply = client.post(URL.format(cid), content=body, headers=headers)
            assert reply.status_code == 202, reply.text
            answers.append(reply.json())

    threads = [threading.Thread(target=post, args=(g,)) for g in gateways * 2]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for g in gateways:
            close_gateway(g)
    assert len(answers) == 30
    stored = events(hook_settings)
    assert sorted(e.delivery_id for e in stored) == sorted(f"msg_race_{i}" for i in range(5))
    assert sum(not a["duplicate"] for a in answers) == 5
    assert {a["event_id"] for a in answers} == {e.id for e in stored}
    assert sorted(q["kwargs"]["event_id"] for q in queued(hook_settings)) == sorted(
        e.id for e in stored
    )


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("tampered body", 401, "bad_signature"),
        ("wrong secret", 401, "bad_signature"),
        ("stale timestamp", 401, "stale_timestamp"),
        ("no signature headers", 401, "missing_signature"),
        ("signed non-JSON", 400, "malformed"),
        ("doubled signature header", 400, "doubled_header"),
    ],
)
def test_a_refused_delivery_stores_and_queues_nothing(
    gateway: TestClient,
    hook_settings: Settings,
    counted: Counted,
    caplog: pytest.LogCaptureFixture,
    case: str,
    status: int,
    reason: str,
) -> None:
    cid = add_hook_connection(hook_settings)
    other = "whsec_" + "b" * 44
    body, headers = {
        "tampered body": lambda: signed(),
        "wrong secret": lambda: signed(secret=other),
        "stale timestamp": lambda: signed(at=time.time() - 3600),
        "no signature headers": lambda: (b"{}", {"content-type": "application/json"}),
        "signed non-JSON": lambda: signed(b"not json {"),
        "doubled signature header": lambda: signed(),
    }[case]()
    if case == "tampered body":
        body += b" "
    raw_headers = list(headers.items())
    if case == "doubled signature header":
        raw_headers.append(("webhook-signature", headers["webhook-signature"]))
    with caplog.at_level(logging.DEBUG):
        answer = gateway.post(URL.format(cid), content=body, headers=raw_headers)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert detail.endswith(".") and "\n" not in detail
    assert events(hook_settings) == [] and queued(hook_settings) == []
    assert counted.outcomes() == [("sandbox", "refused", reason)]
    assert f"webhook refused ({status}, {reason})" in caplog.text
    if "webhook-signature" in headers:
        assert headers["webhook-signature"].split(",", 1)[1] not in caplog.text
    assert no_secret_in(caplog.text) and "item.updated" not in caplog.text  # nor the body


def test_unknown_connection_other_provider_and_no_intake_are_404(
    gateway: TestClient, hook_settings: Settings, counted: Counted
) -> None:
    cid = add_hook_connection(hook_settings)
    no_intake = add_hook_connection(hook_settings, "plain", provider="discord_webhook")
    body, headers = signed()
    paths = [
        URL.format("00000000-0000-0000-0000-000000000000"),
        URL.format("x" * 5000),
        f"/webhooks/github/{cid}",
        f"/webhooks/no-such-provider/{cid}",
        f"/webhooks/discord_webhook/{no_intake}",
    ]
    for path in paths:
        answer = gateway.post(path, content=body, headers=headers)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["detail"].startswith("No connection ")
    assert events(hook_settings) == []
    assert counted.outcomes() == [
        ("sandbox", "refused", "unknown_connection"),
        ("sandbox", "refused", "unknown_connection"),
        ("github", "refused", "unknown_connection"),
        ("unknown", "refused", "unknown_connection"),
        ("discord_webhook", "refused", "unknown_connection"),
    ]


def test_a_connection_removed_while_cached_is_404(
    gateway: TestClient, hook_settings: Settings
) -> None:
    cid = add_hook_connection(hook_settings)
    body, headers = signed()
    assert gateway.post(URL.format(cid), content=body, headers=headers).status_code == 202
    with session_scope(hook_settings.database_url) as session:
        remove_connection(session, cid)
    body, headers = signed()
    answer = gateway.post(URL.format(cid), content=body, headers=headers)
    assert answer.status_code == 404, answer.text


def test_a_new_secret_is_used_once_the_cache_lapses_and_decrypted_once_per_lapse(
    gateway: TestClient, hook_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = gateway.app.state.webhooks.intake  # type: ignore[attr-defined]
    decrypted: list[int] = []
    real = SecretBox.decrypt_json

    def counting(box: SecretBox, token: bytes) -> dict[str, Any]:
        decrypted.append(1)
        return real(box, token)

    monkeypatch.setattr(SecretBox, "decrypt_json", counting)
    cid = add_hook_connection(hook_settings)
    for _ in range(5):
        body, headers = signed()
        assert gateway.post(URL.format(cid), content=body, headers=headers).status_code == 202
    assert len(decrypted) == 1  # a burst reads the connection and its secret once
    new = "whsec_" + "c" * 44
    with session_scope(hook_settings.database_url) as session:
        update_connection(session, SecretBox(hook_settings.secret_keys), cid,
                          secrets={"webhook_secret": new})  # fmt: skip
    intake.cache_seconds = 0.0
    intake.forget(cid)  # as if the cached entry's time had passed
    body, headers = signed()
    assert gateway.post(URL.format(cid), content=body, headers=headers).status_code == 401
    body, headers = signed(secret=new)
    assert gateway.post(URL.format(cid), content=body, headers=headers).status_code == 202


def test_the_cache_keeps_a_connection_no_longer_than_its_time(hook_settings: Settings) -> None:
    app = create_app(hook_settings)
    intake = app.state.webhooks.intake
    intake.cache_seconds = 0.2
    cid = add_hook_connection(hook_settings)
    new = "whsec_" + "d" * 44
    with TestClient(app, base_url=PUBLIC_URL) as client:
        body, headers = signed()
        assert client.post(URL.format(cid), content=body, headers=headers).status_code == 202
        with session_scope(hook_settings.database_url) as session:
            update_connection(session, SecretBox(hook_settings.secret_keys), cid,
                              secrets={"webhook_secret": new})  # fmt: skip
        time.sleep(0.3)
        body, headers = signed(secret=new)
        assert client.post(URL.format(cid), content=body, headers=headers).status_code == 202
    close_gateway(client)


def test_too_large_by_content_length_and_while_streaming_is_413(
    hook_settings: Settings, counted: Counted
) -> None:
    limit = 1024
    s = dataclasses.replace(hook_settings, operations=Operations(webhook_max_bytes=limit))
    cid = add_hook_connection(s)
    big = {"type": "item.updated", "data": {"pad": "a" * limit}}
    fits = {"type": "item.updated", "data": {"pad": "a" * (limit - 60)}}
    with TestClient(create_app(s), base_url=PUBLIC_URL) as client:
        body, headers = signed(big)
        declared = client.post(URL.format(cid), content=body, headers=headers)
        assert declared.status_code == 413
        assert declared.json() == {"detail": f"The body is over {limit} bytes; nothing was stored."}

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(body), 100):
                yield body[i : i + 100]

        streamed = client.post(URL.format(cid), content=chunks(), headers=headers)
        assert streamed.status_code == 413
        body, headers = signed(fits)
        assert len(body) <= limit
        assert client.post(URL.format(cid), content=body, headers=headers).status_code == 202
    close_gateway(client)
    assert len(events(s)) == 1
    assert counted.outcomes()[:2] == [("sandbox", "refused", "too_large")] * 2


def test_a_body_over_the_limit_is_not_read_further(hook_settings: Settings) -> None:
    """Refused as soon as it passes the limit: the chunks after it are never asked for."""
    limit = 1024
    s = dataclasses.replace(hook_settings, operations=Operations(webhook_max_bytes=limit))
    app = create_app(s)
    path = URL.format("any")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("gateway.test", 80), "client": ("127.0.0.1", 1),
        "headers": [(b"content-type", b"application/json")],
    }  # fmt: skip
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"a" * 100, "more_body": pulled < 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    import anyio

    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled == limit // 100 + 1


def test_store_down_is_503_and_health_stays_200(hook_settings: Settings, counted: Counted) -> None:
    cid = add_hook_connection(hook_settings)

    @contextmanager
    def unreachable() -> Iterator[Session]:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        yield  # pragma: no cover

    app = create_app(hook_settings, sessions=unreachable)
    body, headers = signed()
    with TestClient(app, base_url=PUBLIC_URL) as client:
        answer = client.post(URL.format(cid), content=body, headers=headers)
        assert answer.status_code == 503
        assert "send the delivery again later" in answer.json()["detail"]
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
    assert counted.outcomes() == [("sandbox", "unavailable", "store_down")]


def test_store_down_after_the_connection_is_cached_is_503(
    gateway: TestClient, hook_settings: Settings
) -> None:
    cid = add_hook_connection(hook_settings)
    body, headers = signed()
    assert gateway.post(URL.format(cid), content=body, headers=headers).status_code == 202
    intake = gateway.app.state.webhooks.intake  # type: ignore[attr-defined]

    @contextmanager
    def unreachable() -> Iterator[Session]:
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        yield  # pragma: no cover

    intake.sessions = unreachable
    body, headers = signed()
    assert gateway.post(URL.format(cid), content=body, headers=headers).status_code == 503
    assert len(events(hook_settings)) == 1


def test_broker_down_still_answers_202_and_leaves_the_event_unsent(
    hook_settings: Settings, counted: Counted, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    down = dataclasses.replace(hook_settings, broker_url=UNREACHABLE_BROKER)
    cid = add_hook_connection(hook_settings)
    with TestClient(create_app(down), base_url=PUBLIC_URL) as client:
        for _ in range(2):  # the second while sends are paused
            body, headers = signed()
            answer = client.post(URL.format(cid), content=body, headers=headers)
            assert answer.status_code == 202, answer.text
            assert answer.json()["duplicate"] is False
    close_gateway(client)
    stored = events(hook_settings)
    assert len(stored) == 2
    assert all(e.enqueued_at is None and e.status == "received" for e in stored)
    assert counted.outcomes() == [("sandbox", "accepted", "none")] * 2
    assert "the sweep will send it once the broker answers" in caplog.text
    assert queued(hook_settings) == []


def test_a_handshake_is_answered_and_nothing_is_stored(
    gateway: TestClient, hook_settings: Settings, counted: Counted
) -> None:
    signing = "slack-signing-secret"
    cid = add_hook_connection(hook_settings, "slack", provider="slack", secret=signing)
    body = json.dumps({"type": "url_verification", "challenge": "ch-123", "token": "x"}).encode()
    stamp = str(int(time.time()))
    mac = hmac.new(signing.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"x-slack-request-timestamp": stamp, "x-slack-signature": "v0=" + mac,
               "content-type": "application/json"}  # fmt: skip
    answer = gateway.post(f"/webhooks/slack/{cid}", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"challenge": "ch-123"}
    assert events(hook_settings) == [] and queued(hook_settings) == []
    assert counted.outcomes() == [("slack", "handshake", "none")]


def test_a_connection_without_a_webhook_secret_is_401(
    gateway: TestClient, hook_settings: Settings
) -> None:
    with session_scope(hook_settings.database_url) as session:
        from spark_integrations.store.connections import add_connection

        cid = add_connection(
            session, SecretBox(hook_settings.secret_keys), provider="sandbox", name="bare",
            config={}, secrets={"api_key": "k"}, status="active",
        ).id  # fmt: skip
    body, headers = signed()
    answer = gateway.post(URL.format(cid), content=body, headers=headers)
    assert answer.status_code == 401 and events(hook_settings) == []


def test_openapi_documents_the_intake(gateway: TestClient) -> None:
    doc = gateway.get("/openapi.json").json()
    post = doc["paths"]["/webhooks/{provider}/{connection_id}"]["post"]
    assert set(post["responses"]) >= {"202", "400", "401", "404", "413", "503"}
