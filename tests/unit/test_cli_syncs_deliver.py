"""``syncs add --deliver changes|new``: the delivery mode stored with the sync and shown by add,
list and status (JSON ``"deliver"``, and the human lines); refused in one sentence, exit 2 and
nothing stored, with the store destination or any other value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_integrations.store import SyncDefinition, session_scope
from tests.unit.test_cli_syncs import SYNC_KEYS, assert_clean_error


def add_connection(cli: Any, provider: str) -> str:
    added = cli(
        "connections", "add", provider, "--name", provider,
        "--config", '{"base_url": "http://127.0.0.1:9"}', "--secret", "api_key=k", "--json",
    ).json()  # fmt: skip
    return str(added["id"])


@pytest.fixture
def conn(cli: Any) -> str:
    return add_connection(cli, "sandbox")


@pytest.fixture
def spark(cli: Any) -> str:
    return add_connection(cli, "spark")


def test_deliver_is_stored_and_shown_by_add_list_and_status(
    conn: str, spark: str, cli: Any, home: Path
) -> None:
    action = f"action:{conn}:create_message"
    new = cli(
        "syncs", "add", conn, "items", "--destination", f"spark:{spark}:wf-1",
        "--with", "input={name}", "--deliver", "new", "--json",
    ).json()  # fmt: skip
    assert set(new) == SYNC_KEYS and new["deliver"] == "new"
    changes = cli(
        "syncs", "add", conn, "items", "--destination", action, "--deliver", "changes", "--json"
    ).json()
    assert changes["deliver"] == "changes"
    assert (
        cli("syncs", "add", conn, "items", "--destination", action, "--json").json()["deliver"]
        == "changes"
    )
    assert cli("syncs", "add", conn, "items", "--json").json()["deliver"] == "changes"

    listed = cli("syncs", "list", "--json").json()
    assert [s["deliver"] for s in listed] == ["new", "changes", "changes", "changes"]
    assert cli("syncs", "status", new["id"], "--json").json()["deliver"] == "new"
    with session_scope(f"sqlite:///{home / 'store.db'}") as session:
        stored = session.get(SyncDefinition, new["id"])
        assert stored is not None and stored.deliver == "new"

    human = cli("syncs", "list").out.splitlines()
    assert f'-> spark:{spark}:wf-1 input="{{name}}" (new records only)  enabled' in human[0]
    assert all("new records only" not in line for line in human[1:])
    assert "(new records only)" in cli("syncs", "status", new["id"]).out
    added = cli("syncs", "add", conn, "items", "--destination", action, "--deliver", "new").out
    assert added.startswith("added sync ") and f"-> {action}, new records only);" in added


@pytest.mark.parametrize(
    ("destination", "deliver", "words"),
    [
        ("store", "new", "--deliver does not apply to the store destination"),
        ("store", "changes", "--deliver does not apply to the store destination"),
        ("store", "bogus", "--deliver takes changes or new, not 'bogus'"),
        ("action:CONN:create_message", "all", "--deliver takes changes or new, not 'all'"),
        ("action:CONN:create_message", "", "--deliver takes changes or new, not ''"),
        ("spark:SPARK:wf-1", "NEW", "--deliver takes changes or new, not 'NEW'"),
    ],
)
def test_a_bad_deliver_is_refused_and_nothing_is_stored(
    conn: str,
    spark: str,
    cli: Any,
    destination: str,
    deliver: str,
    words: str,
) -> None:
    dest = destination.replace("CONN", conn).replace("SPARK", spark)
    done = cli("syncs", "add", conn, "items", "--destination", dest, "--deliver", deliver)
    assert_clean_error(done, 2, words)
    assert cli("syncs", "list", "--json").json() == []
