"""The Slack and Discord emulators behave as the providers document (they share no code with
the connectors: these tests speak plain HTTP to them)."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests

from tests.emulators.discord import BUCKETS, Discord
from tests.emulators.slack import Slack

GENERAL, RANDOM = "C012AB3CD", "C061EG9T2"
CHANNEL = "290926798999357250"
BOT = {"Authorization": "Bearer xoxb-test-token"}
DISCORD_BOT = {"Authorization": "Bot bot-test-token"}


@pytest.fixture
def slack() -> Iterator[Slack]:
    with Slack(per_minute={"tier3": 4}, window=60).start() as emu:
        yield emu


@pytest.fixture
def discord() -> Iterator[Discord]:
    with Discord(route_limits={"create_message": (2, 60.0)}).start() as emu:
        yield emu


def test_slack_errors_are_http_200_with_ok_false(slack: Slack) -> None:
    api = slack.url + "/api/"
    cases = [
        ({}, {"channel": GENERAL, "text": "x"}, "not_authed"),
        ({"Authorization": "Bearer nope"}, {"channel": GENERAL, "text": "x"}, "invalid_auth"),
        (BOT, {"channel": "C0", "text": "x"}, "channel_not_found"),
        (BOT, {"channel": GENERAL}, "no_text"),
        (BOT, {"channel": GENERAL, "text": "x" * 40_001}, "msg_too_long"),
    ]
    for headers, body, error in cases:
        answer = requests.post(api + "chat.postMessage", json=body, headers=headers, timeout=10)
        assert (answer.status_code, answer.json()) == (200, {"ok": False, "error": error})
    # The token may also come as a form argument.
    answer = requests.post(
        api + "chat.postMessage",
        data={"token": "xoxb-test-token", "channel": GENERAL, "text": "form"},
        timeout=10,
    )
    assert answer.json()["ok"] is True and answer.json()["message"]["text"] == "form"


def test_slack_history_is_newest_first_with_a_cursor_and_oldest(slack: Slack) -> None:
    sent = slack.seed_messages(RANDOM, 5)
    api = slack.url + "/api/conversations.history"
    first = requests.get(api, params={"channel": RANDOM, "limit": 3}, headers=BOT, timeout=10)
    body = first.json()
    assert [m["ts"] for m in body["messages"]] == sent[::-1][:3] and body["has_more"] is True
    cursor = body["response_metadata"]["next_cursor"]
    assert base64.b64decode(cursor).decode() == f"next_ts:{sent[2]}"
    rest = requests.get(
        api, params={"channel": RANDOM, "limit": 3, "cursor": cursor}, headers=BOT, timeout=10
    ).json()
    assert [m["ts"] for m in rest["messages"]] == sent[1::-1] and rest["has_more"] is False
    assert "response_metadata" not in rest or not rest["response_metadata"]["next_cursor"]
    # oldest excludes its own ts unless inclusive.
    since = {"channel": RANDOM, "oldest": sent[2]}
    after = requests.get(api, params=since, headers=BOT, timeout=10).json()["messages"]
    assert [m["ts"] for m in after] == sent[:2:-1]
    since["inclusive"] = "true"
    after = requests.get(api, params=since, headers=BOT, timeout=10).json()["messages"]
    assert [m["ts"] for m in after] == sent[:1:-1]
    assert all(Decimal(a) < Decimal(b) for a, b in itertools.pairwise(sent))


def test_slack_tier_limit_answers_429_with_retry_after(slack: Slack) -> None:
    api = slack.url + "/api/conversations.history"
    codes = [
        requests.get(api, params={"channel": RANDOM}, headers=BOT, timeout=10) for _ in range(5)
    ]
    assert [a.status_code for a in codes] == [200, 200, 200, 200, 429]
    assert codes[-1].json() == {"ok": False, "error": "ratelimited"}
    assert 1 <= int(codes[-1].headers["Retry-After"]) <= 60
    assert "X-RateLimit-Remaining" not in codes[0].headers
    assert slack.stats()["rate_limited"] == 1


def test_slack_rotating_tokens_expire_and_refresh_tokens_work_once(slack: Slack) -> None:
    code = slack.add_client("cid", "secret")
    api = slack.url + "/api/"
    pair = requests.post(
        api + "oauth.v2.access", auth=("cid", "secret"), data={"code": code}
    ).json()
    assert pair["access_token"].startswith("xoxe.xoxb-") and pair["expires_in"] == 43200
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert requests.get(api + "users.list", headers=bearer, timeout=10).json()["ok"] is True
    slack.expire_tokens()
    expired = requests.get(api + "users.list", headers=bearer, timeout=10).json()
    assert expired == {"ok": False, "error": "token_expired"}
    grant = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    new = requests.post(api + "oauth.v2.access", auth=("cid", "secret"), data=grant).json()
    assert new["ok"] and new["refresh_token"] != pair["refresh_token"]
    again = requests.post(api + "oauth.v2.access", auth=("cid", "secret"), data=grant).json()
    assert again == {"ok": False, "error": "invalid_refresh_token"}


def test_slack_injected_errors_by_class(slack: Slack) -> None:
    api = slack.url + "/api/users.list"
    for kind, error in (("retry", "service_unavailable"), ("unknown", "internal_error"),
                        ("reauth", "invalid_auth"), ("fatal", "channel_not_found")):  # fmt: skip
        slack.inject(kind)
        assert requests.get(api, headers=BOT, timeout=10).json() == {"ok": False, "error": error}
    control = requests.post(
        slack.url + "/_emulator/inject", json={"kind": "rate_limited"}, timeout=10
    )
    assert control.json() == {"queued": True}
    limited = requests.get(api, headers=BOT, timeout=10)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert requests.get(slack.url + "/_emulator/stats", timeout=10).json()["injected"] == 5


def test_discord_lists_newest_first_and_after_reads_forward(discord: Discord) -> None:
    ids = discord.seed_messages(CHANNEL, 7)
    url = f"{discord.url}/api/v10/channels/{CHANNEL}/messages"
    newest = requests.get(url, params={"limit": 3}, headers=DISCORD_BOT, timeout=10).json()
    assert [m["id"] for m in newest] == ids[::-1][:3]
    first = requests.get(url, params={"after": 0, "limit": 3}, headers=DISCORD_BOT, timeout=10)
    assert [m["id"] for m in first.json()] == ids[2::-1], "the oldest three, newest first"
    nxt = requests.get(url, params={"after": ids[2], "limit": 3}, headers=DISCORD_BOT, timeout=10)
    assert [m["id"] for m in nxt.json()] == ids[5:2:-1]
    bad = requests.get(url, params={"limit": 101}, headers=DISCORD_BOT, timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == 50035
    both = requests.get(url, params={"after": 1, "before": 9}, headers=DISCORD_BOT, timeout=10)
    assert both.status_code == 400
    assert requests.get(url, timeout=10).status_code == 401
    assert (int(ids[0]) >> 22) > 0, "snowflakes carry their time"


def test_discord_route_headers_and_429(discord: Discord) -> None:
    url = f"{discord.url}/api/v10/channels/{CHANNEL}/messages"
    answers = [
        requests.post(url, json={"content": str(i)}, headers=DISCORD_BOT, timeout=10)
        for i in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    first, last = answers[0].headers, answers[-1]
    assert first["X-RateLimit-Limit"] == "2" and first["X-RateLimit-Remaining"] == "1"
    assert first["X-RateLimit-Bucket"] == BUCKETS["create_message"]
    assert 0 < float(first["X-RateLimit-Reset-After"]) <= 60
    assert (
        last.headers["X-RateLimit-Scope"] == "user" and last.headers["X-RateLimit-Remaining"] == "0"
    )
    body = last.json()
    assert body["global"] is False and 0 < body["retry_after"] <= 60
    assert body["message"] == "You are being rate limited."
    discord.inject("global")
    other = requests.get(url, headers=DISCORD_BOT, timeout=10)
    assert other.status_code == 429 and other.headers["X-RateLimit-Global"] == "true"
    assert other.json()["global"] is True


def test_discord_nonce_deduplicates_with_enforce_nonce_only() -> None:
    with Discord().start() as discord:
        url = f"{discord.url}/api/v10/channels/{CHANNEL}/messages"
        body = {"content": "once", "nonce": "n-1", "enforce_nonce": True}
        a = requests.post(url, json=body, headers=DISCORD_BOT, timeout=10).json()
        b = requests.post(url, json=body, headers=DISCORD_BOT, timeout=10).json()
        assert a["id"] == b["id"] and a["nonce"] == "n-1"
        plain = {"content": "twice", "nonce": "n-2"}  # without enforce_nonce: two messages
        for _ in range(2):
            requests.post(url, json=plain, headers=DISCORD_BOT, timeout=10)
        assert [m["content"] for m in discord.messages(CHANNEL)] == ["once", "twice", "twice"]
        long = requests.post(url, json={"content": "x", "nonce": "n" * 26}, headers=DISCORD_BOT)
        assert long.status_code == 400 and long.json()["code"] == 50035


def test_discord_webhook_execution(discord: Discord) -> None:
    hook = discord.url + "/api/webhooks/223704706495545344/"
    token = next(iter(discord.webhooks.values()))["token"]
    waited = requests.post(hook + token, params={"wait": "true"}, json={"content": "hi"})
    assert waited.status_code == 200 and waited.json()["webhook_id"] == "223704706495545344"
    assert "X-RateLimit-Bucket" in waited.headers
    fire = requests.post(hook + token, json={"content": "fire and forget"}, timeout=10)
    assert fire.status_code == 204 and fire.content == b""
    wrong = requests.post(hook + "nope", json={"content": "x"}, timeout=10)
    assert (wrong.status_code, wrong.json()["code"]) == (401, 50027)
    unknown = requests.post(discord.url + "/api/webhooks/1/x", json={"content": "x"}, timeout=10)
    assert (unknown.status_code, unknown.json()["code"]) == (404, 10015)
