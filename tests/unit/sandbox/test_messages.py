"""``POST /v1/messages``: validation, creation, lookup, idempotency keys."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from spark_integrations.sandbox import SandboxServer
from tests.unit.sandbox.conftest import StartSandbox
from tests.unit.sandbox.helpers import API_KEY, stats, wait_for


def all_messages(http: requests.Session, url: str) -> list[dict[str, Any]]:
    with http.get(f"{url}/_sandbox/messages") as answer:
        messages: list[dict[str, Any]] = answer.json()
    return messages


def test_create_and_get(sandbox: SandboxServer, api: requests.Session) -> None:
    with api.post(f"{sandbox.url}/v1/messages", json={"text": "hello"}) as answer:
        assert answer.status_code == 201
        created = answer.json()
        assert answer.headers["Location"] == f"/v1/messages/{created['id']}"
    assert set(created) == {"id", "text", "created_at"}
    assert created["id"].startswith("msg_") and created["text"] == "hello"
    with api.get(f"{sandbox.url}/v1/messages/{created['id']}") as answer:
        assert answer.status_code == 200 and answer.json() == created
    with api.get(f"{sandbox.url}/v1/messages/msg_nope") as answer:
        assert answer.status_code == 404
    listed = all_messages(api, sandbox.url)
    assert listed == [{**created, "idempotency_key": None}]
    assert stats(sandbox.url)["messages_created"] == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b"{}", b'{"text": 5}', b'{"text": null}', b'{"text": "a", "x": 1}'],
)
def test_invalid_bodies_are_400(sandbox: SandboxServer, api: requests.Session, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    with api.post(f"{sandbox.url}/v1/messages", data=body, headers=headers) as answer:
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_request" and answer.json()["message"]
    assert all_messages(api, sandbox.url) == []


def test_idempotent_replay_creates_nothing_more(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    url = f"{sandbox.url}/v1/messages"
    key = {"Idempotency-Key": "key-1"}
    with api.post(url, json={"text": "once"}, headers=key) as first:
        assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
        original = first.content
    for _ in range(2):
        with api.post(url, json={"text": "once"}, headers=key) as again:
            assert again.status_code == 201
            assert again.headers["Idempotent-Replayed"] == "true"
            assert again.content == original
    messages = all_messages(api, sandbox.url)
    assert len(messages) == 1 and messages[0]["idempotency_key"] == "key-1"
    counters = stats(sandbox.url)
    assert counters["idempotent_replays"] == 2 and counters["messages_created"] == 1


def test_same_key_with_another_body_is_422(sandbox: SandboxServer, api: requests.Session) -> None:
    url = f"{sandbox.url}/v1/messages"
    key = {"Idempotency-Key": "key-2"}
    with api.post(url, json={"text": "one"}, headers=key) as answer:
        assert answer.status_code == 201
    with api.post(url, json={"text": "two"}, headers=key) as answer:
        assert answer.status_code == 422
        assert answer.json()["error"] == "idempotency_key_reused"
    with api.post(url, json={"text": "two"}, headers={"Idempotency-Key": "key-3"}) as answer:
        assert answer.status_code == 201
    assert [m["text"] for m in all_messages(api, sandbox.url)] == ["one", "two"]


def test_concurrent_repeat_is_409_in_use(start_sandbox: StartSandbox) -> None:
    """A slow fault sleeps with its key reserved (here for ten minutes: as long as the test
    needs), so a repeat with the key meets it in progress: 409. Then the sleeper is let go."""
    srv = start_sandbox(fault_rate=1.0, fault_kinds=("slow",), slow_seconds=600)
    statuses: list[int] = []

    def post() -> None:
        with requests.Session() as session:
            session.trust_env = False
            with session.post(
                f"{srv.url}/v1/messages",
                json={"text": "race"},
                headers={"Idempotency-Key": "key-race", "X-API-Key": API_KEY},
                timeout=60,
            ) as answer:
                statuses.append(answer.status_code)
                if answer.status_code == 409:
                    assert answer.json()["error"] == "idempotency_key_in_use"

    first = threading.Thread(target=post)
    first.start()
    wait_for(lambda: stats(srv.url)["faults_injected"] == 1)  # the first is in
    second = threading.Thread(target=post)
    second.start()
    wait_for(lambda: statuses == [409])  # one found the other's key in progress
    srv.sandbox.stopping.set()  # ends slow faults' sleep: the one holding the key goes on
    for thread in (first, second):
        thread.join(timeout=60)
    assert sorted(statuses) == [201, 409]
    with requests.Session() as session:
        session.trust_env = False
        assert len(all_messages(session, srv.url)) == 1
