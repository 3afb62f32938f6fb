"""Stripe end to end: real workers against the loopback Stripe emulator (tests/emulators).

A sync of customers reads Stripe's newest-first list to its end (``starting_after`` while
``has_more``) and keeps the highest ``created`` as its cursor; the next run asks
``created[gte]`` and reads only what is new. Actions run through ``integrations.call``: a
payment intent confirmed and refunded; a create whose answer is lost on the way back is sent
again with the same ``Idempotency-Key`` and Stripe (the emulator) replays its first answer, so
one customer exists; one injected error of each class: ``rate_limit`` and ``lock_timeout``
(429s, retried), an ``api_error`` 500 on a keyed create (resent with its key), a 500 with
``Stripe-Should-Retry: false``, a card decline and a key reused with other params (fatal at
once), an invalid key (refused). The emulator's own limiter (25 reads and 25 writes a second)
never answers 429: the connector's budget keeps under it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from celery import Celery

from tests.emulators.stripe import Stripe
from tests.integration.fleet import (
    client_app,
    dead_letters,
    outcome,
    run_cli,
    send_call,
    start_workers,
)
from tests.integration.test_syncs import cursor_of, run_to_end, stored

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

KEY = "sk_test_" + uuid.uuid4().hex


def add_connection(env: dict[str, str], config: dict[str, Any], key: str) -> str:
    done = run_cli(
        env, "connections", "add", "stripe", "--name", f"stripe-{uuid.uuid4().hex[:6]}",
        "--config", json.dumps(config), "--secret", f"api_key={key}", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def add_sync(env: dict[str, str], connection_id: str, stream: str) -> str:
    done = run_cli(env, "syncs", "add", connection_id, stream, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def call(
    app: Celery, cid: str, action: str, params: dict[str, Any], key: str | None = None
) -> tuple[bool, Any]:
    result = send_call(app, cid, action, params, key=key or uuid.uuid4().hex)
    return outcome(result, timeout=120)


def test_a_sync_and_actions_through_a_worker(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = Stripe(keys={KEY: None}).start()
    processes.append(emu)
    seeded = emu.seed("customer", 250, start=1_700_000_000)
    cid = add_connection(redis_env, {"base_url": emu.url}, KEY)
    sync_id = add_sync(redis_env, cid, "customers")
    workers = start_workers(redis_env, short_tmp, processes, concurrency=2)
    app = client_app(redis_env)

    first = run_to_end(app, sync_id)
    assert (first["records"], first["pages"]) == (250, 3), first
    assert sorted(stored(redis_env, sync_id)) == sorted(seeded)
    assert cursor_of(redis_env, sync_id) == 1_700_000_249
    pages = emu.recorded("list_customers")
    assert pages[0]["query"] == {"limit": "100"}
    # Newest first: each next page starts after the last (oldest) customer of the one before.
    assert [p["query"].get("starting_after") for p in pages[1:]] == [seeded[150], seeded[50]]
    assert all(p["headers"]["authorization"] == f"Bearer {KEY}" for p in pages)

    # Three customers created since: the next run asks created[gte] from the cursor.
    fresh = emu.seed("customer", 3, start=1_700_000_300)
    second = run_to_end(app, sync_id)
    assert second["records"] == 3 and second["pages"] == 1, second
    assert emu.recorded("list_customers")[-1]["query"] == {
        "created[gte]": "1700000249", "limit": "100"}  # fmt: skip
    assert set(fresh) <= set(stored(redis_env, sync_id))

    # Actions: a payment intent confirmed, then refunded.
    ok, answer = call(app, cid, "create_payment_intent", {
        "amount": 2000, "currency": "usd", "confirm": True, "payment_method": "pm_card_visa",
        "metadata": {"order_id": "6735"}, "payment_method_types": ["card"]})  # fmt: skip
    assert ok and answer["data"]["status"] == "succeeded", answer
    intent = answer["data"]["id"]
    sent = emu.recorded("create_payment_intent")[-1]
    assert sorted(parse_qsl(sent["body"])) == [
        ("amount", "2000"), ("confirm", "true"), ("currency", "usd"),
        ("metadata[order_id]", "6735"), ("payment_method", "pm_card_visa"),
        ("payment_method_types[0]", "card"),
    ]  # fmt: skip
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert sent["headers"]["idempotency-key"]
    ok, answer = call(app, cid, "create_refund", {"payment_intent": intent, "amount": 500})
    assert ok and answer["data"]["amount"] == 500, answer

    # A create whose answer is lost: sent again with the same key, replayed, one customer.
    customers = emu.count("customer")
    emu.inject("lost_answer", route="create_customer")
    ok, answer = call(app, cid, "create_customer", {"email": "jenny@example.com"}, key="lost-1")
    assert ok and answer["attempts"] == 2, answer
    assert emu.count("customer") == customers + 1
    both = emu.recorded("create_customer")[-2:]
    assert both[0]["headers"]["idempotency-key"] == both[1]["headers"]["idempotency-key"]
    assert emu.stats()["replayed"] >= 1
    assert answer["data"]["email"] == "jenny@example.com"

    # Retried classes: the call succeeds on its second request.
    for kind in ("rate_limit", "lock_timeout", "api_error", "api_error_retry"):
        emu.inject(kind, route="create_customer")
        ok, answer = call(app, cid, "create_customer", {"name": kind})
        assert ok and answer["attempts"] == 2, (kind, answer)

    # Fatal classes: refused at once, one request, a dead letter each.
    letters = len(dead_letters(redis_env))
    for kind, said in (
        ("card_declined", "card_declined"),
        ("api_error_no_retry", "api_error"),
        ("idempotency_error", "idempotency_error"),
        ("permission", "permissions"),
        ("authentication", "credentials"),
    ):
        before = len(emu.recorded("create_payment_intent"))
        emu.inject(kind, route="create_payment_intent")
        ok, error = call(app, cid, "create_payment_intent", {"amount": 100, "currency": "usd"})
        assert not ok and said in str(error), (kind, error)
        assert len(emu.recorded("create_payment_intent")) == before + 1, (kind, "not resent")
    assert len(dead_letters(redis_env)) == letters + 5

    # Only the injected 429s: the connector's budget kept under Stripe's limiter.
    stats = emu.stats()
    assert stats.get("limit_exceeded", 0) == 0, stats
    assert stats["rate_limited"] == 2, stats
    assert all(KEY not in w.output() for w in workers), "the key is in a worker's log"
