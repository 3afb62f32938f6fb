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

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.emulators.stripe import Stripe
from tests.integration.fleet import add_connection, dead_letters
from tests.integration.providers import add_sync, call, logged, start_emulator, start_fleet
from tests.integration.test_syncs import cursor_of, run_to_end, stored

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

KEY = "sk_test_" + uuid.uuid4().hex


def add_stripe(env: dict[str, str], config: dict[str, Any], key: str) -> str:
    name = f"stripe-{uuid.uuid4().hex[:6]}"
    return add_connection(env, name, config, f"api_key={key}", provider="stripe")


def test_a_sync_and_actions_through_a_worker(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(Stripe(keys={KEY: None}), processes)
    seeded = emu.seed("customer", 250, start=1_700_000_000)
    cid = add_stripe(redis_env, {"base_url": emu.url}, KEY)
    sync_id = str(add_sync(redis_env, cid, "customers")["id"])
    workers, app = start_fleet(redis_env, short_tmp, processes, concurrency=2)

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
    assert not logged(workers, KEY), "the key is in a worker's log"
