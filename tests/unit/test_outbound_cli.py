"""``subscribers add|list|remove|enable|disable``: what is stored, what is shown (never a
secret), and one sentence for every refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from spark_integrations.store import session_scope
from spark_integrations.store.models_webhooks import Subscriber


def stored(home: Path) -> list[Subscriber]:
    if not (home / "store.db").exists():
        return []  # refused before the store was opened
    with session_scope(f"sqlite:///{home / 'store.db'}") as session:
        return list(session.scalars(select(Subscriber)))


def test_add_makes_a_secret_prints_it_once_and_keeps_it_sealed(cli: Any, home: Path) -> None:
    added = cli("subscribers", "add", "http://127.0.0.1:9/in", "--events", "sync.*", "--json")
    view = added.json()
    secret = view.pop("secret")
    assert secret.startswith("whsec_")
    assert view["kind"] == "url" and view["url"] == "http://127.0.0.1:9/in"
    assert view["events"] == ["sync.*"] and view["enabled"] is True
    [row] = stored(home)
    assert row.secret is not None and secret.encode() not in row.secret
    listed = cli("subscribers", "list", "--json")
    assert listed.json() == [{**view, "deliveries": {"pending": 0, "delivered": 0, "failed": 0}}]
    assert secret not in listed.out
    text = cli("subscribers", "list")
    assert view["id"] in text.out and "sync.*" in text.out and secret not in text.out


def test_add_takes_a_secret_given_on_stdin(
    cli: Any, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    given = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    monkeypatch.setattr("sys.stdin", io.StringIO(given + "\n"))
    added = cli("subscribers", "add", "https://x.example/in", "--events", "*", "--secret", "-")
    assert added.code == 0, added.err
    assert given in added.out  # printed once, as a made one is
    from spark_integrations.store import SecretBox
    from spark_integrations.workers.runtime import prepare

    box: SecretBox = prepare(redis=False).box
    [row] = stored(home)
    assert row.secret is not None and box.decrypt(row.secret) == given


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://example.com/in", "--events", "sync.failed"], "must use https://"),
        (["https://u:p@example.com/in", "--events", "sync.failed"], "must not hold a user name"),
        (["ftp://example.com/in", "--events", "sync.failed"], "must be an https:// URL"),
        (["https://example.com/in", "--events", "sync.done"], "unknown event type 'sync.done'"),
        (["https://example.com/in", "--events", "sync.failed", "--secret", "hunter2"], "--secret"),
        (["--events", "sync.failed"], "give a URL or --spark"),
        (["https://e.com/", "--spark", "c:w", "--events", "sync.failed"], "give a URL or --spark"),
        (["--spark", "nowhere", "--events", "sync.failed"], "--spark takes CONNECTION_ID:WORK"),
        (["--spark", "c:w", "--events", "sync.failed", "--secret", "x"], "a --spark subscriber"),
        (["--spark", "nope:wf", "--events", "sync.failed"], "no connection has the id 'nope'"),
    ],
)
def test_add_refuses_in_one_sentence(cli: Any, home: Path, args: list[str], message: str) -> None:
    done = cli("subscribers", "add", *args)
    assert done.code in (1, 2)
    assert message in done.err and "Traceback" not in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert "hunter2" not in done.err
    assert stored(home) == []


def test_a_spark_subscriber_needs_a_spark_connection(cli: Any, home: Path) -> None:
    config = json.dumps({"base_url": "http://127.0.0.1:9"})
    spark = cli(
        "connections", "add", "spark", "--name", "sp", "--config", config,
        "--secret", "api_key=sk", "--json",
    ).json()["id"]  # fmt: skip
    other = cli(
        "connections", "add", "sandbox", "--name", "sb", "--config", config,
        "--secret", "api_key=sk", "--json",
    ).json()["id"]  # fmt: skip
    refused = cli("subscribers", "add", "--spark", f"{other}:wf", "--events", "sync.failed")
    assert refused.code == 2 and "is a sandbox connection" in refused.err
    added = cli("subscribers", "add", "--spark", f"{spark}:wf-9", "--events", "sync.*", "--json")
    view = added.json()
    assert "secret" not in view
    assert (view["kind"], view["spark_connection_id"], view["workflow_id"]) == (
        "spark",
        spark,
        "wf-9",
    )
    assert f"spark:{spark}:wf-9" in cli("subscribers", "list").out


def test_enable_disable_and_remove(cli: Any, home: Path) -> None:
    sid = cli("subscribers", "add", "https://x.example/in", "--events", "*", "--json").json()["id"]
    assert cli("subscribers", "disable", sid).code == 0
    assert "(disabled)" in cli("subscribers", "list").out
    refused = cli("subscribers", "test", sid)
    assert refused.code == 2 and "is disabled" in refused.err
    assert cli("subscribers", "enable", sid).code == 0
    assert cli("subscribers", "list", "--json").json()[0]["enabled"] is True
    assert cli("subscribers", "remove", sid).code == 0
    assert cli("subscribers", "list", "--json").json() == []
    gone = cli("subscribers", "remove", sid)
    assert gone.code == 1 and f"no subscriber has the id {sid!r}" in gone.err
