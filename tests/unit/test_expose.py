"""``expose key|action|sync|list|remove``: the key printed once and kept only as a digest, the
exposures stored with their defaults and descriptions, every bad input one sentence."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from spark_integrations.settings import DEFAULT_SPARK_WAIT, MAX_SPARK_WAIT, load
from spark_integrations.store import session_scope
from spark_integrations.store.models import Exposure, SparkKey
from tests.unit.test_cli_syncs import assert_clean_error

VIEW_KEYS = {"name", "kind", "connection_id", "action", "params", "sync_id", "description"}


@pytest.fixture
def url(home: Path) -> str:
    return f"sqlite:///{home / 'store.db'}"


@pytest.fixture
def conn(cli: Any) -> str:
    added = cli(
        "connections", "add", "sandbox", "--name", "Main Box",
        "--config", '{"base_url": "http://127.0.0.1:9"}', "--secret", "api_key=k", "--json",
    ).json()  # fmt: skip
    return str(added["id"])


def stored_hashes(url: str) -> list[str]:
    with session_scope(url) as session:
        return list(session.scalars(select(SparkKey.key_hash)))


def test_key_is_printed_once_kept_as_its_digest_and_replaced(cli: Any, url: str) -> None:
    first = cli("expose", "key", "--json").json()
    assert set(first) == {"key"} and len(first["key"]) >= 40
    assert stored_hashes(url) == [hashlib.sha256(first["key"].encode()).hexdigest()]

    plain = cli("expose", "key")
    assert plain.code == 0
    second = plain.out.strip()
    assert second and second != first["key"] and "\n" not in second
    assert "/spark" in plain.err and second not in plain.err
    # The new key replaced the old one; neither is stored as itself.
    assert stored_hashes(url) == [hashlib.sha256(second.encode()).hexdigest()]
    with session_scope(url) as session:
        assert not session.execute(select(SparkKey).where(SparkKey.key_hash == second)).first()
    assert cli("expose", "list").out.strip().startswith("nothing is exposed")


def test_an_action_is_exposed_with_a_default_name_and_its_inputs(cli: Any, conn: str) -> None:
    added = cli("expose", "action", conn, "create_message", "--json").json()
    assert set(added) == VIEW_KEYS
    assert added["name"] == "main-box-create_message"
    assert added["kind"] == "action" and added["connection_id"] == conn
    assert added["action"] == "create_message" and added["params"] == {}
    assert added["sync_id"] is None
    assert "create_message" in added["description"]
    assert "text for 'text'" in added["description"]

    fixed = cli(
        "expose", "action", conn, "get_message", "--name", "one_msg", "--params", '{"id": "m1"}',
        "--json",
    ).json()  # fmt: skip
    assert fixed["params"] == {"id": "m1"}
    assert 'Fixed: {"id": "m1"}' in fixed["description"]
    assert "Input: a JSON object" in fixed["description"]

    listed = cli("expose", "list", "--json").json()
    assert [e["name"] for e in listed] == ["main-box-create_message", "one_msg"]
    assert listed[0] == added
    human = cli("expose", "list").out.splitlines()
    assert human[0].startswith(f"main-box-create_message  create_message on {conn}: Runs")


def test_a_sync_is_exposed_with_a_default_name(cli: Any, conn: str) -> None:
    sync = cli("syncs", "add", conn, "items", "--json").json()
    added = cli("expose", "sync", sync["id"], "--json").json()
    assert added["name"] == f"sync-items-{sync['id'][:8]}"
    assert added["kind"] == "sync" and added["sync_id"] == sync["id"]
    assert added["connection_id"] is None and added["action"] is None
    assert "items" in added["description"] and "Input: ignored" in added["description"]
    # An exposure goes with its sync.
    assert cli("syncs", "remove", sync["id"]).code == 0
    assert cli("expose", "list", "--json").json() == []


def test_remove(cli: Any, conn: str, url: str) -> None:
    cli("expose", "action", conn, "create_message", "--name", "gone", "--json").json()
    done = cli("expose", "remove", "gone")
    assert done.code == 0 and "gone is no longer exposed." in done.out
    with session_scope(url) as session:
        assert session.get(Exposure, "gone") is None
    assert_clean_error(cli("expose", "remove", "gone"), 1, "nothing is exposed as 'gone'")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("create_message", "--name", "Not A Slug"), 2, "a-z, 0-9"),
        (("create_message", "--name", ""), 2, "not usable"),
        (("create_message", "--name", "x" * 201), 2, "1 to 200"),
        (("no_such_action",), 2, "no action 'no_such_action'"),
        (("create_message", "--params", "[1]"), 2, "--params must be a JSON object"),
        (("create_message", "--params", "{"), 2, "--params is not valid JSON"),
        (("create_message", "--params", '{"colour": 1}'), 2, "takes no param 'colour'"),
        (("create_message", "--params", '{"text": 5}'), 2, "must be a string"),
    ],
)
def test_bad_exposures_are_refused_in_one_sentence(
    cli: Any, conn: str, url: str, args: tuple[str, ...], code: int, words: str
) -> None:
    assert_clean_error(cli("expose", "action", conn, *args), code, words)
    with session_scope(url) as session:
        assert session.scalars(select(Exposure)).all() == []


def test_names_are_unique_and_targets_must_exist(cli: Any, conn: str) -> None:
    cli("expose", "action", conn, "create_message", "--json").json()
    assert_clean_error(
        cli("expose", "action", conn, "create_message"), 2, "exposed already", "--name"
    )
    assert_clean_error(cli("expose", "action", "nope", "create_message"), 1, "nope")
    assert_clean_error(cli("expose", "sync", "nope"), 1, "no sync 'nope'")


@pytest.mark.parametrize("name", ["db-connection-check", "timeout-probe"])
def test_a_name_spark_would_take_for_a_network_failure_is_refused(
    cli: Any, conn: str, name: str
) -> None:
    """Spark 0.3.7 runs a failed scheduled run again when its error (which holds the run's
    URL, so the name) says "connection" or "timeout": such a name is refused, nothing stored."""
    assert_clean_error(
        cli("expose", "action", conn, "create_message", "--name", name), 2, "spark", "--name"
    )
    assert cli("expose", "list", "--json").json() == []


def test_the_wait_setting(tmp_path: Path) -> None:
    """README/docs: SPARK_INTEGRATIONS_SPARK_WAIT is 4 s by default (below spark's 5 s)."""
    home = {"SPARK_INTEGRATIONS_HOME": str(tmp_path / "home")}
    assert load(home).spark_wait == DEFAULT_SPARK_WAIT == 4.0
    assert load({**home, "SPARK_INTEGRATIONS_SPARK_WAIT": "0.5"}).spark_wait == 0.5
    assert load({**home, "SPARK_INTEGRATIONS_SPARK_WAIT": str(MAX_SPARK_WAIT)}).spark_wait == 300
    for bad in ("0", "-1", "abc", "nan", "inf", "301"):
        with pytest.raises(Exception, match="SPARK_INTEGRATIONS_SPARK_WAIT") as caught:
            load({**home, "SPARK_INTEGRATIONS_SPARK_WAIT": bad})
        assert type(caught.value).__name__ == "ConfigurationError"


@pytest.mark.parametrize("name", ["a\x00b", "Ünïcode", "has space", "", "x" * 201])
def test_a_name_no_exposure_can_have_is_not_found_without_a_store_error(
    store_url: str, name: str
) -> None:
    # PostgreSQL refuses a NUL in a query: looked up, such a name read as a store failure
    # (a 503 "store unreachable" at /spark instead of a 404).
    from spark_integrations.errors import NotFoundError
    from spark_integrations.store.exposures import get_exposure

    with session_scope(store_url) as session, pytest.raises(NotFoundError, match="expose list"):
        get_exposure(session, name)
