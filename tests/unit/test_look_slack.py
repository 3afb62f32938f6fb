"""Slack's look (connectors/providers/slack.py): a post whose answer was lost, looked for in its
channel's history; Slack mocked with ``responses`` from its method pages' examples."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from spark_integrations.connectors.providers.slack import LOOK_PAGES, Slack
from spark_integrations.errors import RateLimitedError, RetriableError

BASE = "https://slack.test/api"
HISTORY, AUTH = BASE + "/conversations.history", BASE + "/auth.test"
CHANNEL, BOT = "C123ABC456", "B123ABC456"
POST = Slack.get_action("post_message")


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def slack() -> Slack:
    return Slack({"base_url": BASE}, {"bot_token": "xoxb-unit-look-slack"})


def bot(ts: str, text: str, bot_id: str = BOT) -> dict[str, Any]:
    return {"type": "message", "subtype": "bot_message", "bot_id": bot_id, "text": text, "ts": ts}


def page(*messages: dict[str, Any], cursor: str = "") -> dict[str, Any]:
    return {"ok": True, "messages": list(messages), "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor}}  # fmt: skip


def queries(rsps: responses.RequestsMock) -> list[dict[str, str]]:
    return [dict(parse_qsl(urlsplit(c.request.url).query)) for c in rsps.calls
            if c.request.url.startswith(HISTORY)]  # fmt: skip


def params(text: str, **more: Any) -> dict[str, Any]:
    return {"channel": CHANNEL, "text": text, **more}


def test_only_a_post_is_lookable(slack: Slack) -> None:
    assert slack.lookable(POST)
    for name in ("update_message", "add_reaction", "list_conversations", "list_users"):
        assert not slack.lookable(Slack.get_action(name))


def test_the_bots_message_with_the_text_is_found_as_the_post_would_have_answered(
    slack: Slack, rsps: responses.RequestsMock
) -> None:
    rsps.post(AUTH, json={"ok": True, "user_id": "U0KRQLJ9H", "bot_id": BOT})
    # Slack stores &, < and > escaped; another bot's and a person's message say the same.
    mine = bot("1700000002.000200", "build &lt;main&gt; &amp; tests: ok")
    rsps.get(HISTORY, json=page(
        bot("1700000003.000100", "build <main> & tests: ok", bot_id="B0OTHER"),
        {"type": "message", "user": "W012A3CDE", "text": "build <main> & tests: ok",
         "ts": "1700000002.500000"},
        mine,
    ))  # fmt: skip
    found = slack.look(POST, params("build <main> & tests: ok"), 1700000000.25)
    assert found.outcome == "found"
    assert found.data == {"ok": True, "channel": CHANNEL, "ts": mine["ts"], "message": mine}
    assert found.detail == f"the history of Slack channel {CHANNEL} since 1700000000.250000"
    [query] = queries(rsps)
    assert query == {"channel": CHANNEL, "oldest": "1700000000.250000", "inclusive": "true",
                     "limit": "200"}  # fmt: skip


def test_a_history_read_to_its_end_without_it_is_absent(
    slack: Slack, rsps: responses.RequestsMock
) -> None:
    rsps.post(AUTH, json={"ok": True, "user_id": "U0KRQLJ9H", "bot_id": BOT})
    rsps.get(HISTORY, json=page(bot("5.000000", "other"), cursor="bmV4dF90czox"))
    rsps.get(HISTORY, json=page(bot("4.000000", "still other")))
    found = slack.look(POST, params("hello"), 1.0)
    assert found.outcome == "absent"
    assert [q.get("cursor") for q in queries(rsps)] == [None, "bmV4dF90czox"]


def test_the_message_on_a_later_page_is_found(slack: Slack, rsps: responses.RequestsMock) -> None:
    rsps.post(AUTH, json={"ok": True, "user_id": "U0KRQLJ9H", "bot_id": BOT})
    rsps.get(HISTORY, json=page(bot("5.000000", "other"), cursor="bmV4dF90czox"))
    rsps.get(HISTORY, json=page(bot("4.000000", "hello")))
    assert slack.look(POST, params("hello"), 1.0).data["ts"] == "4.000000"


def test_a_history_longer_than_the_look_reads_is_unknown(
    slack: Slack, rsps: responses.RequestsMock
) -> None:
    rsps.post(AUTH, json={"ok": True, "bot_id": BOT})
    rsps.get(HISTORY, json=page(bot("5.000000", "other"), cursor="bmV4dF90czox"))
    found = slack.look(POST, params("hello"), 1.0)
    assert found.outcome == "unknown" and f"longer than {LOOK_PAGES} pages" in found.detail
    assert len(queries(rsps)) == LOOK_PAGES


def test_a_user_token_is_matched_on_its_user(slack: Slack, rsps: responses.RequestsMock) -> None:
    rsps.post(AUTH, json={"ok": True, "user_id": "W012A3CDE"})
    rsps.get(HISTORY, json=page(
        bot("6.000000", "hello"),
        {"type": "message", "user": "W012A3CDE", "text": "hello", "ts": "5.000000"},
    ))  # fmt: skip
    assert slack.look(POST, params("hello"), 1.0).data["ts"] == "5.000000"


def test_a_refused_read_is_unknown_and_says_why(slack: Slack, rsps: responses.RequestsMock) -> None:
    rsps.post(AUTH, json={"ok": True, "bot_id": BOT})
    rsps.get(HISTORY, json={"ok": False, "error": "missing_scope", "needed": "channels:history"})
    found = slack.look(POST, params("hello"), 1.0)
    assert found.outcome == "unknown"
    assert found.detail.startswith(f"the history of Slack channel {CHANNEL} since 1.000000, "
                                   "which Slack refused to read (")  # fmt: skip
    assert "missing_scope" in found.detail and "xoxb-unit-look-slack" not in found.detail


def test_slack_asking_to_wait_lets_the_fleet_look_again_later(
    slack: Slack, rsps: responses.RequestsMock
) -> None:
    rsps.post(AUTH, json={"ok": True, "bot_id": BOT})
    rsps.get(HISTORY, status=429, headers={"Retry-After": "3"},
             json={"ok": False, "error": "ratelimited"})  # fmt: skip
    with pytest.raises(RateLimitedError) as info:
        slack.look(POST, params("hello"), 1.0)
    assert info.value.retry_after == 3
    rsps.replace(responses.POST, AUTH, json={"ok": False, "error": "service_unavailable"})
    with pytest.raises(RetriableError):
        slack.look(POST, params("hello"), 1.0)


def test_a_thread_reply_is_unknown_unless_broadcast_to_the_channel(
    slack: Slack, rsps: responses.RequestsMock
) -> None:
    found = slack.look(POST, params("hello", thread_ts="1.000000"), 1.0)
    assert found.outcome == "unknown" and "a thread reply is not in it" in found.detail
    assert len(rsps.calls) == 0
    rsps.post(AUTH, json={"ok": True, "bot_id": BOT})
    rsps.get(HISTORY, json=page(bot("3.000000", "hello")))
    broadcast = params("hello", thread_ts="1.000000", reply_broadcast=True)
    assert slack.look(POST, broadcast, 1.0).outcome == "found"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        # Slack links a URL and an e-mail address in the text it stores ("Formatting text
        # for app surfaces": links come back as <URL> or <URL|label>).
        ("failed: https://spark.test/tasks/1", "failed: <https://spark.test/tasks/1>"),
        ("mail ops@example.com", "mail <mailto:ops@example.com|ops@example.com>"),
        ("see <https://x.test|the run> & more", "see <https://x.test|the run> &amp; more"),
    ],
)
def test_a_message_slack_stored_with_its_links_marked_up_is_found(
    slack: Slack, rsps: responses.RequestsMock, sent: str, stored: str
) -> None:
    rsps.post(AUTH, json={"ok": True, "bot_id": BOT})
    rsps.get(HISTORY, json=page(bot("5.000000", "failed: something else"), bot("4.000000", stored)))
    found = slack.look(POST, params(sent), 1.0)
    assert found.outcome == "found" and found.data["ts"] == "4.000000"
