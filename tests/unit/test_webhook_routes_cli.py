"""``webhooks list|show|replay`` and ``webhooks route add|list|remove`` in an embedded HOME: the
contract's JSON shapes, and every bad input refused in one sentence (exit 2 for usage, 1 for what
does not exist) with nothing stored."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from spark_integrations.store import WebhookEvent, session_scope
from spark_integrations.store.types import utcnow
from tests.unit.test_cli_syncs import assert_clean_error

EVENT_KEYS = {"id", "provider", "connection_id", "delivery_id", "type", "status", "received_at"}
ROUTE_KEYS = {
    "id", "connection_id", "event_type", "kind", "sync_id", "target_connection_id", "action",
    "workflow_id", "params", "created_at",
}  # fmt: skip


@pytest.fixture
def url(home: Path) -> str:
    return f"sqlite:///{home / 'store.db'}"


@pytest.fixture
def conn(cli: Any) -> str:
    added = cli(
        "connections", "add", "sandbox", "--name", "hooks",
        "--config", '{"base_url": "http://127.0.0.1:9"}', "--secret", "api_key=k", "--json",
    ).json()  # fmt: skip
    return str(added["id"])


@pytest.fixture
def spark(cli: Any) -> str:
    added = cli(
        "connections", "add", "spark", "--name", "spark",
        "--config", '{"base_url": "http://127.0.0.1:9"}', "--secret", "api_key=k", "--json",
    ).json()  # fmt: skip
    return str(added["id"])


@pytest.fixture
def sync(cli: Any, conn: str) -> str:
    return str(cli("syncs", "add", conn, "items", "--json").json()["id"])


def store_event(url: str, conn: str, n: int, status: str = "received", **extra: Any) -> str:
    with session_scope(url) as session:
        event = WebhookEvent(
            provider="sandbox", connection_id=conn, delivery_id=f"msg_{n}",
            event_type=f"item.e{n}", payload={"n": n}, status=status,
            received_at=utcnow() + timedelta(seconds=n), **extra,
        )  # fmt: skip
        session.add(event)
        session.flush()
        return event.id


def test_route_add_list_and_remove_in_the_json_shape(
    cli: Any, conn: str, spark: str, sync: str
) -> None:
    by_sync = cli("webhooks", "route", "add", conn, "item.*", "--sync", sync, "--json").json()
    assert set(by_sync) == ROUTE_KEYS
    assert (by_sync["kind"], by_sync["sync_id"], by_sync["params"]) == ("sync", sync, {})
    by_action = cli(
        "webhooks", "route", "add", conn, "item.updated", "--action", f"{conn}:create_message",
        "--with", "text=item {data.id} = {data.name}", "--json",
    ).json()  # fmt: skip
    assert by_action["kind"] == "action" and by_action["action"] == "create_message"
    assert by_action["target_connection_id"] == conn
    assert by_action["params"] == {"text": "item {data.id} = {data.name}"}
    by_spark = cli(
        "webhooks", "route", "add", conn, "*", "--spark", f"{spark}:wf-9",
        "--with", "input={data}", "--json",
    ).json()  # fmt: skip
    assert (by_spark["kind"], by_spark["workflow_id"]) == ("spark", "wf-9")
    plain = cli("webhooks", "route", "add", conn, "*", "--spark", f"{spark}:wf-10")
    assert plain.code == 0 and plain.out.startswith("added route ")

    listed = cli("webhooks", "route", "list", "--json").json()
    assert [r["id"] for r in listed][:3] == [by_sync["id"], by_action["id"], by_spark["id"]]
    assert cli("webhooks", "route", "list", conn, "--json").json() == listed
    assert cli("webhooks", "route", "list", spark, "--json").json() == []
    human = cli("webhooks", "route", "list").out.splitlines()
    assert f"item.* -> sync {sync}" in human[0]
    assert f'-> create_message on {conn} text="item {{data.id}} = {{data.name}}"' in human[1]

    removed = cli("webhooks", "route", "remove", by_action["id"], "--json").json()
    assert removed == {"id": by_action["id"], "removed": True}
    assert by_action["id"] not in [
        r["id"] for r in cli("webhooks", "route", "list", "--json").json()
    ]
    assert_clean_error(cli("webhooks", "route", "remove", by_action["id"]), 1, "no webhook route")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["CONN", "*"], 2, "give one of --sync SYNC_ID"),
        (["CONN", "*", "--sync", "SYNC", "--action", "CONN:create_message"], 2, "give one of"),
        (["CONN", "*", "--sync", "SYNC", "--with", "text={x}"], 2, "a sync route takes none"),
        (["CONN", " item", "--sync", "SYNC"], 2, "EVENT_TYPE must be an event type"),
        (["CONN", "", "--sync", "SYNC"], 2, "EVENT_TYPE must be an event type"),
        (["CONN", "x" * 201, "--sync", "SYNC"], 2, "EVENT_TYPE must be an event type"),
        (["CONN", "a\tb", "--sync", "SYNC"], 2, "EVENT_TYPE must be an event type"),
        (["nope", "*", "--sync", "SYNC"], 1, "no connection has the id 'nope'"),
        (["SPARK", "*", "--sync", "SYNC"], 2, "receives no webhooks"),
        (["CONN", "*", "--sync", "nope"], 1, "no sync 'nope'"),
        (["CONN", "*", "--action", "CONN"], 2, "--action is written CONNECTION_ID:ACTION"),
        (["CONN", "*", "--action", "CONN:a:b"], 2, "--action is written CONNECTION_ID:ACTION"),
        (["CONN", "*", "--action", "nope:create_message"], 1, "no connection has the id 'nope'"),
        (["CONN", "*", "--action", "CONN:nope"], 2, "sandbox has no action 'nope'"),
        (["CONN", "*", "--action", "CONN:create_message", "--with", "channel={x}"], 2,
         "create_message takes no param 'channel'"),
        (["CONN", "*", "--action", "CONN:create_message", "--with", "text={x"], 2,
         "--with text: the template '{x' is malformed"),
        (["CONN", "*", "--action", "CONN:create_message", "--with", "text={x!r}"], 2,
         "format spec or conversion"),
        (["CONN", "*", "--action", "CONN:create_message", "--with", "text"], 2,
         "--with takes NAME=TEMPLATE"),
        (["CONN", "*", "--action", "CONN:create_message", "--with", "text=a", "--with", "text=b"],
         2, "--with text is given twice"),
        (["CONN", "*", "--spark", "SPARK"], 2, "--spark is written CONNECTION_ID:WORKFLOW_ID"),
        (["CONN", "*", "--spark", "CONN:wf-1"], 2,
         "is a sandbox connection; --spark needs a spark connection"),
        (["CONN", "*", "--spark", "SPARK:wf-1", "--with", "text={x}"], 2,
         "--spark takes only --with input=TEMPLATE"),
        (["CONN", "*", "--spark", "nope:wf-1"], 1, "no connection has the id 'nope'"),
    ],
)  # fmt: skip
def test_bad_routes_are_refused_in_one_sentence_and_nothing_is_stored(
    cli: Any, conn: str, spark: str, sync: str, args: list[str], code: int, words: str
) -> None:
    names = {"CONN": conn, "SPARK": spark, "SYNC": sync}
    filled = [a.replace("CONN", conn).replace("SPARK", spark) if a not in names else names[a]
              for a in args]  # fmt: skip
    assert_clean_error(cli("webhooks", "route", "add", *filled, "--json"), code, words)
    assert cli("webhooks", "route", "list", "--json").json() == []


def test_the_same_route_twice_is_refused(cli: Any, conn: str, sync: str) -> None:
    first = cli("webhooks", "route", "add", conn, "item", "--sync", sync, "--json").json()
    again = cli("webhooks", "route", "add", conn, "item", "--sync", sync)
    assert_clean_error(again, 2, f"the same route exists already: {first['id']}")
    # Another pattern is another route.
    assert cli("webhooks", "route", "add", conn, "item.*", "--sync", sync).code == 0


def test_route_list_of_an_unknown_connection_is_not_found(cli: Any, conn: str) -> None:
    assert_clean_error(cli("webhooks", "route", "list", "nope"), 1, "no connection")
    assert cli("webhooks", "route", "list").out.startswith("no webhook routes")


def test_routes_go_with_their_connection_and_their_sync(
    cli: Any, conn: str, spark: str, sync: str
) -> None:
    cli("webhooks", "route", "add", conn, "item", "--sync", sync)
    cli("webhooks", "route", "add", conn, "*", "--spark", f"{spark}:wf-1")
    cli("syncs", "remove", sync)
    assert [r["kind"] for r in cli("webhooks", "route", "list", "--json").json()] == ["spark"]
    cli("connections", "remove", spark)
    assert cli("webhooks", "route", "list", "--json").json() == []


def test_webhooks_list_is_newest_first_in_the_contract_shape(cli: Any, url: str, conn: str) -> None:
    assert cli("webhooks", "list", "--json").json() == []
    assert cli("webhooks", "list").out.strip() == "no webhook events."
    ids = [store_event(url, conn, n) for n in range(3)]
    listed = cli("webhooks", "list", "--json").json()
    assert [e["id"] for e in listed] == ids[::-1]
    assert all(set(e) == EVENT_KEYS for e in listed)
    newest = listed[0]
    assert newest["provider"] == "sandbox" and newest["connection_id"] == conn
    assert (newest["delivery_id"], newest["type"], newest["status"]) == (
        "msg_2",
        "item.e2",
        "received",
    )
    assert newest["received_at"].endswith("Z")
    assert [e["id"] for e in cli("webhooks", "list", "--limit", "2", "--json").json()] == ids[:0:-1]
    assert ids[2] in cli("webhooks", "list").out.splitlines()[0]
    assert_clean_error(cli("webhooks", "list", "--limit", "0"), 2, "--limit")


def test_webhooks_show_says_what_processing_did(cli: Any, url: str, conn: str) -> None:
    event_id = store_event(
        url, conn, 1, status="failed", error="it broke.", attempts=8,
        result={"replay": 0, "failures": 8, "task_id": "t", "try": 7},
    )  # fmt: skip
    shown = cli("webhooks", "show", event_id, "--json").json()
    assert set(shown) == EVENT_KEYS | {"error", "attempts", "processed_at", "result"}
    assert (shown["status"], shown["error"], shown["attempts"]) == ("failed", "it broke.", 8)
    assert shown["result"]["failures"] == 8
    text = cli("webhooks", "show", event_id).out
    assert "failed after 8 attempt(s)" in text and "error: it broke." in text
    assert_clean_error(cli("webhooks", "show", "nope"), 1, "no webhook event 'nope'")


def test_replay_refuses_an_unknown_event_and_one_being_processed(
    cli: Any, url: str, conn: str
) -> None:
    assert_clean_error(cli("webhooks", "replay", "nope"), 1, "no webhook event 'nope'")
    busy = store_event(
        url, conn, 1, status="processing",
        result={"task_id": "t", "try": 0, "taken_at": utcnow().isoformat()},
    )  # fmt: skip
    assert_clean_error(cli("webhooks", "replay", busy), 2, "is being processed now")
    with session_scope(url) as session:
        event = session.get(WebhookEvent, busy)
        assert event is not None and event.status == "processing"


def test_replay_with_the_broker_refusing_is_one_sentence_and_leaves_the_event_to_the_sweep(
    cli: Any, url: str, conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event is reopened before the send: a send that fails was a traceback, and left the
    event marked as sent (the sweep waited its stale time, five minutes at least)."""
    from kombu.exceptions import OperationalError

    from spark_integrations.workers.app import app

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(app, "send_task", refused)
    failed = store_event(url, conn, 1, status="failed", error="it broke.")
    assert_clean_error(
        cli("webhooks", "replay", failed), 1, f"webhook event {failed} is reopened",
        "OperationalError", "the sweep sends it",
    )  # fmt: skip
    with session_scope(url) as session:
        event = session.get(WebhookEvent, failed)
        assert event is not None
        assert (event.status, event.enqueued_at, event.result) == ("received", None, {"replay": 1})
