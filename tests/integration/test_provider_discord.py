"""Discord end to end: real workers against the loopback Discord emulator.

A ``discord`` connection (a bot token) syncs a channel's messages: ten full pages of 100 read
oldest first with ``after``, under a per-route limit of 3 requests per 2 seconds that the
emulator enforces and announces in its ``X-RateLimit-*`` headers. The fleet keys the route's
budget on ``X-RateLimit-Bucket`` and waits for ``X-RateLimit-Reset-After`` whenever
``X-RateLimit-Remaining`` reaches 0, so the emulator answers no 429 but the injected one. The
next run starts after the greatest id read and reads only what is new.

One action (``create_message``) runs through ``integrations.call`` with one injected error of
each class: a route's 429 (the retry waits ``retry_after``), a 502 (retried: the message carries
its nonce, which Discord deduplicates), an answer lost after the message was created (resent:
Discord returns the first message, none is created twice), 403 (fatal at once), and a 401 (a bot
token has nothing to renew: given up at once). A ``discord_webhook`` connection posts through its
webhook URL, which appears in no result and no log line.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.discord import Discord
from tests.integration.fleet import add_connection, dead_letters
from tests.integration.providers import (
    add_sync,
    call,
    gap,
    logged,
    start_emulator,
    start_fleet,
    stored_values,
)
from tests.integration.test_syncs import cursor_of, run_to_end

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

CHANNEL = "290926798999357250"
TOKEN = "bot-e2e-" + uuid.uuid4().hex
WEBHOOK_ID = "223704706495545344"
WEBHOOK_TOKEN = "3d89bb7572e0fb30d8128367b3b1b44fecd1726de135cbe28a41f8b2f777c372ba2939e72279b94526ff5d1bd4358d65cf11"  # noqa: E501


def add(env: dict[str, str], provider: str, config: dict[str, Any], secret: str) -> str:
    return add_connection(env, f"{provider}-e2e", config, secret, provider=provider)


def stored_ids(env: dict[str, str], sync_id: str) -> list[str]:
    return sorted(stored_values(env, sync_id, "id"), key=int)


def test_a_sync_and_an_action_through_a_worker(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    limits = {"list_messages": (3, 2.0), "create_message": (5, 2.0)}
    emu = start_emulator(Discord(tokens=(TOKEN,), route_limits=limits), processes)
    seeded = emu.seed_messages(CHANNEL, 999)
    cid = add(redis_env, "discord", {"base_url": emu.url + "/api/v10"}, f"bot_token={TOKEN}")
    sync_id = str(add_sync(redis_env, cid, "messages", {"channel_id": CHANNEL})["id"])
    _, app = start_fleet(redis_env, short_tmp, processes, concurrency=2)

    # Ten full pages and an empty one, oldest first; the budget waited at every spent window.
    first = run_to_end(app, sync_id)
    assert first["records"] == 999, first
    assert stored_ids(redis_env, sync_id) == sorted(seeded, key=int)
    assert cursor_of(redis_env, sync_id) == max(seeded, key=int)
    pages = emu.recorded("list_messages")
    assert pages[0]["query"] == {"after": "0", "limit": "100"}
    assert all(p["headers"]["authorization"] == f"Bot {TOKEN}" for p in pages)
    assert emu.stats()["rate_limited"] == 0, "the headers said when each window was spent"

    # The next run starts after the greatest id it read.
    fresh = emu.seed_messages(CHANNEL, 3)
    second = run_to_end(app, sync_id)
    assert second["records"] == 3, second
    assert emu.recorded("list_messages")[-1]["query"]["after"] == max(seeded, key=int)
    assert stored_ids(redis_env, sync_id)[-3:] == fresh

    # One action, then one injected error of each class on it.
    where = {"channel_id": CHANNEL}
    ok, answer = call(app, cid, "create_message", {**where, "content": "Hello, World!"})
    assert ok, answer
    nonce = emu.recorded("create_message")[-1]["body"]["nonce"]
    assert len(nonce) == 25 and emu.recorded("create_message")[-1]["body"]["enforce_nonce"]
    assert emu.messages(CHANNEL)[-1]["content"] == "Hello, World!"

    emu.inject("rate_limited", route="create_message")
    ok, answer = call(app, cid, "create_message", {**where, "content": "after a 429"})
    assert ok and answer["attempts"] == 2, answer
    assert gap(emu, "create_message") >= 0.9, "the retry waited for retry_after"

    emu.inject("retry", route="create_message")
    ok, answer = call(app, cid, "create_message", {**where, "content": "after a 502"})
    assert ok and answer["attempts"] == 2, answer

    created = emu.stats()["created"]
    emu.inject("lost", route="create_message")
    ok, answer = call(app, cid, "create_message", {**where, "content": "answer lost"})
    assert ok and answer["attempts"] == 2, answer
    sent = emu.recorded("create_message")[-2:]
    assert sent[0]["body"]["nonce"] == sent[1]["body"]["nonce"]
    assert emu.stats()["created"] == created + 1, "Discord returned the first message"
    assert [m["content"] for m in emu.messages(CHANNEL)].count("answer lost") == 1

    letters = len(dead_letters(redis_env))
    before = len(emu.recorded("create_message"))
    emu.inject("fatal", route="create_message")
    ok, error = call(app, cid, "create_message", {**where, "content": "forbidden"})
    assert not ok and "Missing Permissions" in str(error), error
    assert len(emu.recorded("create_message")) == before + 1, "fatal: not retried"
    assert len(dead_letters(redis_env)) == letters + 1

    before = len(emu.recorded("edit_message"))
    message_id = emu.messages(CHANNEL)[-1]["id"]
    emu.inject("reauth", route="edit_message")
    ok, error = call(app, cid, "edit_message", {**where, "message_id": message_id, "content": "x"})
    assert not ok and "401" in str(error), error
    assert len(emu.recorded("edit_message")) == before + 1, "a bot token has nothing to renew"

    # The only 429 the emulator answered is the injected one.
    assert emu.stats()["rate_limited"] == 1


def test_a_webhook_post_through_a_worker(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(Discord(route_limits={"execute_webhook": (5, 2.0)}), processes)
    url = f"{emu.url}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
    cid = add(redis_env, "discord_webhook", {}, f"webhook_url={url}")
    workers, app = start_fleet(redis_env, short_tmp, processes, concurrency=1)

    ok, answer = call(app, cid, "send_message", {"content": "Supa Hot", "username": "Mason"})
    assert ok, answer
    assert answer["data"]["webhook_id"] == WEBHOOK_ID
    assert answer["data"]["content"] == "Supa Hot"
    request = emu.recorded("execute_webhook")[-1]
    assert request["query"] == {"wait": "true"} and "authorization" not in request["headers"]

    emu.inject("rate_limited", route="execute_webhook")
    ok, answer = call(app, cid, "send_message", {"content": "after a 429"})
    assert ok and answer["attempts"] == 2, answer
    assert [m["content"] for m in emu.messages(CHANNEL)] == ["Supa Hot", "after a 429"]

    # A webhook message has no nonce: an answer lost after it was posted is not resent.
    emu.inject("unknown", route="execute_webhook")
    ok, error = call(app, cid, "send_message", {"content": "outcome unknown"})
    assert not ok and "outcome_unknown" in str(error), error

    # The URL is the secret: its token appears in no result and no log line of the worker.
    assert WEBHOOK_TOKEN not in json.dumps(answer)
    assert not logged(workers, WEBHOOK_TOKEN)
    assert emu.stats()["rate_limited"] == 1
