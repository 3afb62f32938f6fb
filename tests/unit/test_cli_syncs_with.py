"""``syncs add --with NAME=TEMPLATE``: the destination's params stored with the sync and shown by
add, list and status; every bad one refused in one sentence, exit 2, with nothing stored."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_cli_syncs import SYNC_KEYS, assert_clean_error


@pytest.fixture
def conn(cli: Any) -> str:
    added = cli(
        "connections", "add", "sandbox", "--name", "main",
        "--config", '{"base_url": "http://127.0.0.1:9"}', "--secret", "api_key=k", "--json",
    ).json()  # fmt: skip
    return str(added["id"])


def test_with_is_stored_and_shown_by_add_list_and_status(conn: str, cli: Any) -> None:
    action = f"action:{conn}:create_message"
    added = cli(
        "syncs", "add", conn, "items", "--destination", action,
        "--with", "text={name}: {id} ({value})", "--json",
    ).json()  # fmt: skip
    assert set(added) == SYNC_KEYS
    assert added["destination"] == action
    assert added["destination_params"] == {"text": "{name}: {id} ({value})"}

    store = cli("syncs", "add", conn, "items", "--json").json()
    assert store["destination_params"] == {}

    listed = cli("syncs", "list", "--json").json()
    assert [s["destination_params"] for s in listed] == [added["destination_params"], {}]
    status = cli("syncs", "status", added["id"], "--json").json()
    assert status["destination_params"] == added["destination_params"]

    human = cli("syncs", "list").out.splitlines()
    assert f'-> {action} text="{{name}}: {{id}} ({{value}})"  enabled' in human[0]
    assert "-> store  enabled" in human[1]


def test_an_equals_sign_in_a_template_is_kept(conn: str, cli: Any) -> None:
    added = cli(
        "syncs", "add", conn, "items", "--destination", f"action:{conn}:create_message",
        "--with", "text=a=b {{id}}={id}", "--json",
    ).json()  # fmt: skip
    assert added["destination_params"] == {"text": "a=b {{id}}={id}"}


@pytest.mark.parametrize(
    ("destination", "withs", "words"),
    [
        ("action:CONN:create_message", ["channel={x}"], "create_message takes no param 'channel'"),
        ("action:CONN:create_message", ["text={x"], "--with text: the template '{x' is malformed"),
        ("action:CONN:create_message", ["text={name:>4}"], "format spec or conversion"),
        ("action:CONN:create_message", ["text"], "--with takes NAME=TEMPLATE, not 'text'"),
        ("action:CONN:create_message", ["={id}"], "--with takes NAME=TEMPLATE"),
        ("action:CONN:create_message", ["text={id}", "text={name}"], "--with text is given twice"),
        ("store", ["text={id}"], "the store destination takes no --with params"),
        ("spark:CONN:wf-1", [], "is a sandbox connection; the spark destination needs a spark"),
        ("spark:CONN:wf-1", ["text={id}"], "the spark destination takes only input; --with text"),
        ("spark:CONN", [], "written 'spark:CONNECTION_ID:WORKFLOW_ID'"),
    ],
)  # fmt: skip
def test_bad_with_or_spark_destinations_are_refused_and_nothing_is_stored(
    conn: str, cli: Any, destination: str, withs: list[str], words: str
) -> None:
    args = ["syncs", "add", conn, "items", "--destination", destination.replace("CONN", conn)]
    for text in withs:
        args += ["--with", text]
    assert_clean_error(cli(*args, "--json"), 2, words)
    assert cli("syncs", "list", "--json").json() == []


def test_a_spark_destination_on_a_missing_connection_is_not_found(conn: str, cli: Any) -> None:
    done = cli("syncs", "add", conn, "items", "--destination", "spark:nope:wf-1")
    assert_clean_error(done, 1, "no connection 'nope' for the spark destination")
    assert cli("syncs", "list", "--json").json() == []


def test_a_spark_destination_on_a_spark_connection_is_added(conn: str, cli: Any) -> None:
    spark = cli(
        "connections", "add", "spark", "--name", "spark",
        "--config", '{"base_url": "http://127.0.0.1:9"}', "--secret", "api_key=k", "--json",
    ).json()["id"]  # fmt: skip
    dest = f"spark:{spark}:0b9f-wf"
    plain = cli("syncs", "add", conn, "items", "--destination", dest, "--json").json()
    assert (plain["destination"], plain["destination_params"]) == (dest, {})
    templated = cli(
        "syncs", "add", conn, "items", "--destination", dest, "--with", "input={name}: {id}",
        "--json",
    ).json()  # fmt: skip
    assert templated["destination_params"] == {"input": "{name}: {id}"}
    assert len(cli("syncs", "list", "--json").json()) == 2
