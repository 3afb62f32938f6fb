"""Look before resend, end to end: real workers post to the Slack emulator, which takes no
idempotency key, and lose the answer; the call looks in the channel's history before posting
again, so the channel shows each message once.

- The answer lost after Slack stored the message (the connection closed without it): the
  retry looks, finds the message, and the call succeeds with it (``found``).
- The request lost before Slack stored anything: the look finds nothing, and the message is
  posted, once.
- The worker SIGKILLed (its whole process group) while its request is at Slack, the answer
  held: a new worker gets the message back after the reclaim time, looks, finds it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.slack import BOT_ID, Slack
from tests.integration.fleet import (
    add_connection,
    client_app,
    dead_letters,
    outcome,
    send_call,
    start_workers,
    wait_for,
)
from tests.integration.providers import call, start_emulator, start_fleet

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

GENERAL = "C012AB3CD"
TOKEN = "xoxb-look-" + uuid.uuid4().hex


@pytest.fixture
def quick_env(redis_env: dict[str, str]) -> dict[str, str]:
    """A short reclaim time, so a killed worker's message comes back within seconds."""
    return {**redis_env, "SPARK_INTEGRATIONS_RECLAIM_AFTER": "4"}


def slack_connection(env: dict[str, str], emu: Slack) -> str:
    config = {"base_url": emu.url + "/api"}
    return add_connection(env, "slack-look", config, f"bot_token={TOKEN}", provider="slack")


def texts(emu: Slack) -> list[str]:
    return [m["text"] for m in emu.posted(GENERAL)]


def test_a_post_whose_answer_was_lost_is_looked_for_and_never_shown_twice(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(Slack(tokens=(TOKEN,)), processes)
    cid = slack_connection(redis_env, emu)
    _, app = start_fleet(redis_env, short_tmp, processes, concurrency=1)

    # Stored, then the connection closed without the answer: found by the look.
    emu.lose_answers("chat.postMessage")
    key = uuid.uuid4().hex
    params = {"channel": GENERAL, "text": "stored, answer lost"}
    ok, answer = call(app, cid, "post_message", params, key=key)
    assert ok and answer["found"] is True, answer
    assert texts(emu) == ["stored, answer lost"]
    [message] = emu.posted(GENERAL)
    assert answer["data"] == {"ok": True, "channel": GENERAL, "ts": message["ts"],
                              "message": message}  # fmt: skip
    assert message["bot_id"] == BOT_ID
    assert answer["attempts"] == 2  # the post, then the look
    assert len(emu.recorded("chat.postMessage")) == 1
    [look] = emu.recorded("conversations.history")
    assert look["query"]["channel"] == GENERAL and look["query"]["inclusive"] == "true"
    assert float(look["query"]["oldest"]) < float(message["ts"])
    assert emu.stats()["answers_lost"] == 1
    # The key's record holds what was found: a repeat replays it and sends nothing.
    ok, again = call(app, cid, "post_message", params, key=key)
    assert ok and again == {"ok": True, "data": answer["data"], "attempts": 0, "replayed": True}
    assert len(emu.recorded("chat.postMessage")) == 1

    # Lost before Slack stored anything: the look finds nothing, the message is posted once.
    emu.inject("drop", route="chat.postMessage")
    ok, answer = call(app, cid, "post_message", {"channel": GENERAL, "text": "never stored"})
    assert ok and "found" not in answer, answer
    assert texts(emu) == ["stored, answer lost", "never stored"]
    assert answer["data"]["ts"] == emu.posted(GENERAL)[-1]["ts"]
    assert len(emu.recorded("chat.postMessage")) == 3  # the first, the dropped, the resend
    assert len(emu.recorded("conversations.history")) == 2
    assert dead_letters(redis_env) == []


def test_a_worker_killed_with_its_post_at_slack_is_looked_for_by_the_next(
    quick_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(Slack(tokens=(TOKEN,)), processes)
    cid = slack_connection(quick_env, emu)
    [doomed] = start_workers(quick_env, short_tmp, processes, concurrency=1)
    app = client_app(quick_env)
    emu.lose_answers("chat.postMessage", hold=True)
    params = {"channel": GENERAL, "text": "posted while the worker died"}
    result = send_call(app, cid, "post_message", params, key=uuid.uuid4().hex)
    wait_for(lambda: emu.stats()["held"] == 1, 60, "the post to be stored and its answer held")
    doomed.kill()  # SIGKILL to the worker's whole process group: a host that died

    start_workers(quick_env, short_tmp / "second", processes, concurrency=1)
    ok, answer = outcome(result, timeout=150)
    emu.release()
    assert ok and answer["found"] is True, answer
    assert texts(emu) == ["posted while the worker died"]
    assert answer["data"]["ts"] == emu.posted(GENERAL)[0]["ts"]
    assert len(emu.recorded("chat.postMessage")) == 1, "the post was sent again"
    assert len(emu.recorded("conversations.history")) == 1
    assert dead_letters(quick_env) == []
