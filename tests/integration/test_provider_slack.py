"""Slack end to end: real workers against the loopback Slack emulator.

A ``slack`` connection with a bot token syncs a channel's history: ``conversations.history``
answers newest first, in pages of 200 with a cursor; the engine keeps the run's newest ``ts``
aside and moves the sync's cursor only at the end, and the next run asks from it (``oldest``,
``inclusive``). Slack sends no rate-limit headers on success: the connector's per-method tier
budgets keep under the tiers the emulator enforces (Tier 2: 20/min, Tier 3: 50/min,
``chat.postMessage`` about 1/s per channel), so the only 429 is the injected one.

Actions run through ``integrations.call`` with one injected error of each class, as Slack
answers them: ``ratelimited`` (429 + ``Retry-After``: the retry waits), ``service_unavailable``
(HTTP 200, retried), ``invalid_auth`` (a bot token has nothing to renew: given up at once),
``channel_not_found`` (fatal, a dead letter), ``internal_error`` (outcome unknown: the channel's
history is looked at before posting again, so a message is never posted twice). An OAuth v2
connection with token rotation meets ``token_expired`` twice and refreshes its single-use
refresh token each time.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.slack import Slack
from tests.integration.fleet import add_connection, dead_letters
from tests.integration.oauth_helpers import connect_with_code, stored_token
from tests.integration.providers import (
    add_sync,
    call,
    gap,
    start_emulator,
    start_fleet,
    stored_values,
)
from tests.integration.test_syncs import cursor_of, run_to_end

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

GENERAL, RANDOM = "C012AB3CD", "C061EG9T2"
TOKEN = "xoxb-e2e-" + uuid.uuid4().hex
CLIENT_ID = "2141029472.691202649728"
CLIENT_SECRET = "slack-secret-" + uuid.uuid4().hex


def add_slack(env: dict[str, str], config: dict[str, Any], secret: str) -> str:
    return add_connection(env, "slack-e2e", config, secret, provider="slack")


def stored_ts(env: dict[str, str], sync_id: str) -> list[str]:
    return sorted(stored_values(env, sync_id, "ts"), key=Decimal)


def test_a_sync_and_actions_through_a_worker(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(Slack(tokens=(TOKEN,)), processes)
    seeded = emu.seed_messages(RANDOM, 450)
    cid = add_slack(redis_env, {"base_url": emu.url + "/api"}, f"bot_token={TOKEN}")
    sync_id = str(add_sync(redis_env, cid, "messages", {"channel": RANDOM})["id"])
    _, app = start_fleet(redis_env, short_tmp, processes, concurrency=2)

    # Three pages, newest first; the cursor moves to the newest ts only once the run is done.
    first = run_to_end(app, sync_id)
    assert first["records"] == 450, first
    assert stored_ts(redis_env, sync_id) == seeded
    assert cursor_of(redis_env, sync_id) == seeded[-1]
    pages = emu.recorded("conversations.history")
    assert len(pages) == 3
    assert pages[0]["query"] == {"channel": RANDOM, "inclusive": "true", "limit": "200"}
    assert all(p["headers"]["authorization"] == f"Bearer {TOKEN}" for p in pages)

    # The next run asks from the cursor (inclusive) and reads what is new.
    fresh = emu.seed_messages(RANDOM, 3)
    run_to_end(app, sync_id)
    assert emu.recorded("conversations.history")[-1]["query"]["oldest"] == seeded[-1]
    assert stored_ts(redis_env, sync_id) == seeded + fresh
    assert cursor_of(redis_env, sync_id) == fresh[-1]

    # Actions: post, update, react, list.
    ok, posted = call(app, cid, "post_message", {"channel": GENERAL, "text": "Hello"})
    assert ok and posted["data"]["ok"], posted
    ts = posted["data"]["ts"]
    assert emu.posted(GENERAL)[-1]["text"] == "Hello"
    ok, answer = call(app, cid, "update_message", {"channel": GENERAL, "ts": ts, "text": "Hi"})
    assert ok and emu.posted(GENERAL)[-1]["text"] == "Hi", answer
    where = {"channel": GENERAL, "timestamp": ts, "name": "thumbsup"}
    ok, answer = call(app, cid, "add_reaction", where)
    assert ok, answer
    # Sent again (as after a lost answer): already_reacted is what was asked for.
    ok, answer = call(app, cid, "add_reaction", where)
    assert ok and answer["data"] == {"ok": False, "error": "already_reacted"}, answer
    ok, answer = call(app, cid, "list_conversations", {"limit": 1})
    assert ok and [c["id"] for c in answer["data"]["channels"]] == [GENERAL], answer

    # One injected error of each class.
    emu.inject("rate_limited", route="conversations.list")
    ok, answer = call(app, cid, "list_conversations", {})
    assert ok and answer["attempts"] == 2, answer
    assert gap(emu, "conversations.list") >= 0.9, "the retry waited for Retry-After"

    emu.inject("retry", route="users.list")
    ok, answer = call(app, cid, "list_users", {})
    assert ok and answer["attempts"] == 2, answer
    assert len(answer["data"]["members"]) == 2

    before = len(emu.recorded("users.list"))
    emu.inject("reauth", route="users.list")
    ok, error = call(app, cid, "list_users", {})
    assert not ok and "invalid_auth" in str(error), error
    assert len(emu.recorded("users.list")) == before + 1, "a bot token has nothing to renew"

    letters = len(dead_letters(redis_env))
    before = len(emu.recorded("chat.postMessage"))
    emu.inject("fatal", route="chat.postMessage")
    ok, error = call(app, cid, "post_message", {"channel": GENERAL, "text": "fatal"})
    assert not ok and "channel_not_found" in str(error), error
    assert len(emu.recorded("chat.postMessage")) == before + 1, "fatal: not sent again"
    # internal_error ("some aspect of the operation" may have succeeded): the fleet looks in
    # the channel's history before posting again; nothing was stored, so it posts, once.
    emu.inject("unknown", route="chat.postMessage")
    ok, answer = call(app, cid, "post_message", {"channel": GENERAL, "text": "unknown"})
    assert ok and "found" not in answer, answer
    assert [m["text"] for m in emu.posted(GENERAL)].count("unknown") == 1
    # A look that cannot tell (the history refused): outcome_unknown, not posted again.
    before = len(emu.recorded("chat.postMessage"))
    emu.inject("unknown", route="chat.postMessage")
    refused = {"ok": False, "error": "missing_scope", "needed": "channels:history"}
    emu.inject(status=200, body=refused, route="conversations.history")
    ok, error = call(app, cid, "post_message", {"channel": GENERAL, "text": "in doubt"})
    assert not ok and "outcome_unknown" in str(error) and "missing_scope" in str(error), error
    assert len(emu.recorded("chat.postMessage")) == before + 1, "in doubt: not sent again"
    assert len(dead_letters(redis_env)) == letters + 2

    # The tier budgets kept under Slack's limits: the only 429 was the injected one.
    assert emu.stats()["rate_limited"] == 1


def connect(env: dict[str, str], connection_id: str, emu: Slack) -> None:
    """The workspace's admin installs the app (the emulator consents at once); the code is
    exchanged at oauth.v2.access and the tokens stored as the gateway's callback stores them."""
    token, _ = connect_with_code(
        env,
        connection_id,
        authorize_url=emu.url + "/oauth/v2/authorize",
        token_url=emu.url + "/api/oauth.v2.access",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        params={"scope": "chat:write"},
        statuses=(302,),
    )
    assert token["access_token"].startswith("xoxe.xoxb-") and token["expires_in"] == 43200


def test_an_oauth_connection_refreshes_its_rotating_token(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(Slack(tokens=()), processes)
    emu.add_client(CLIENT_ID, CLIENT_SECRET)
    config = {
        "client_id": CLIENT_ID,
        "base_url": emu.url + "/api",
        "authorize_url": emu.url + "/oauth/v2/authorize",
        "token_url": emu.url + "/api/oauth.v2.access",
    }
    cid = add_slack(redis_env, config, f"client_secret={CLIENT_SECRET}")
    connect(redis_env, cid, emu)
    _, app = start_fleet(redis_env, short_tmp, processes, concurrency=1)

    ok, answer = call(app, cid, "post_message", {"channel": GENERAL, "text": "installed"})
    assert ok, answer

    # Twice: the 12-hour token expires, the call meets token_expired, the fleet refreshes with
    # the refresh token it holds (each works once) and stores the new pair.
    for round_ in range(2):
        before = stored_token(redis_env, cid)
        assert before is not None and before.refresh_token
        emu.expire_tokens()
        ok, answer = call(app, cid, "post_message", {"channel": GENERAL, "text": f"r{round_}"})
        assert ok and answer["attempts"] == 2, answer  # token_expired, then the new token
        after = stored_token(redis_env, cid)
        assert after is not None and after.refresh_token not in (None, before.refresh_token)
        assert after.access_token != before.access_token
    grants = [r["body"] for r in emu.recorded("oauth.v2.access")]
    refreshes = [g for g in grants if "grant_type=refresh_token" in g]
    assert len(refreshes) == 2
    assert [m["text"] for m in emu.posted(GENERAL)] == ["installed", "r0", "r1"]

    # An answer invalid_auth makes the fleet renew the token once, then the call goes through.
    emu.inject("reauth", route="chat.postMessage")
    ok, answer = call(app, cid, "post_message", {"channel": GENERAL, "text": "renewed"})
    assert ok, answer
    assert len([r for r in emu.recorded("oauth.v2.access")]) == len(grants) + 1
    assert emu.stats()["rate_limited"] == 0
