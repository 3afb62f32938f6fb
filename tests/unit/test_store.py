"""The store: connections and their encrypted secrets, cascades, timestamps and SQLite settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.migrations import runner
from spark_integrations.store import (
    Connection,
    DeadLetter,
    OAuthToken,
    SecretBox,
    SyncCursor,
    SyncDefinition,
    SyncRun,
    WebhookEvent,
    session_scope,
)
from spark_integrations.store.connections import (
    add_connection,
    connection_secrets,
    connection_view,
    get_connection,
    list_connections,
    remove_connection,
    update_connection,
)
from spark_integrations.store.engine import SQLITE_BUSY_TIMEOUT_MS, engine_for
from spark_integrations.store.types import UTCDateTime

PLAIN_SECRET = "sk_live_PLAINTEXT-must-never-hit-disk-7f3a9c"


@pytest.fixture
def box(fernet_key: str) -> SecretBox:
    return SecretBox([fernet_key])


@pytest.fixture
def sqlite_store(sqlite_url: str) -> str:
    runner.upgrade(sqlite_url)
    return sqlite_url


def add(session: Session, box: SecretBox, name: str = "main", **kw: object) -> Connection:
    params: dict[str, object] = {
        "provider": "sandbox",
        "name": name,
        "config": {"base_url": "http://127.0.0.1:9"},
        "secrets": {"api_key": "k"},
        "status": "active",
    }
    params.update(kw)
    return add_connection(session, box, **params)  # type: ignore[arg-type]


# --- connections ---------------------------------------------------------------------------------


def test_add_get_list(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        first = add(s, box, "first")
        second = add(s, box, "second", secrets={}, status="needs_auth")
        ids = (first.id, second.id)
    with session_scope(store_url) as s:
        got = get_connection(s, ids[0])
        assert got.provider == "sandbox"
        assert got.name == "first"
        assert got.config == {"base_url": "http://127.0.0.1:9"}
        assert got.status == "active"
        assert connection_secrets(box, got) == {"api_key": "k"}
        assert connection_secrets(box, get_connection(s, ids[1])) == {}
        assert get_connection(s, ids[1]).credentials is None
        assert [c.id for c in list_connections(s)] == list(ids)
        assert connection_view(got) == {
            "id": ids[0],
            "provider": "sandbox",
            "name": "first",
            "status": "active",
        }


def test_duplicate_name_refused(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        add(s, box, "dup")
    with pytest.raises(UsageError) as info, session_scope(store_url) as s:
        add(s, box, "dup")
    assert "dup" in str(info.value)
    with session_scope(store_url) as s:
        assert len(list_connections(s)) == 1


def test_rename_to_taken_name_refused(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        add(s, box, "a")
        b = add(s, box, "b")
    with pytest.raises(UsageError), session_scope(store_url) as s:
        update_connection(s, box, b.id, name="a")
    with session_scope(store_url) as s:
        update_connection(s, box, b.id, name="c")
    with session_scope(store_url) as s:
        assert sorted(c.name for c in list_connections(s)) == ["a", "c"]


def test_update_merges_config_and_secrets(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        conn = add(
            s,
            box,
            config={"base_url": "http://a", "rate_limit": 5, "client_id": "cid"},
            secrets={"api_key": "k1", "webhook_secret": "w1"},
        )
    with session_scope(store_url) as s:
        update_connection(
            s,
            box,
            conn.id,
            config={"rate_limit": None, "base_url": "http://b", "scopes": ["x"]},
            secrets={"api_key": "k2", "password": "p"},
        )
    with session_scope(store_url) as s:
        got = get_connection(s, conn.id)
        assert got.config == {"base_url": "http://b", "client_id": "cid", "scopes": ["x"]}
        assert connection_secrets(box, got) == {
            "api_key": "k2",
            "webhook_secret": "w1",
            "password": "p",
        }


def test_update_secrets_of_connection_without_any(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        conn = add(s, box, secrets={})
    with session_scope(store_url) as s:
        update_connection(s, box, conn.id, secrets={"api_key": "new"})
    with session_scope(store_url) as s:
        assert connection_secrets(box, get_connection(s, conn.id)) == {"api_key": "new"}


def test_update_without_changes_keeps_everything(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        conn = add(s, box)
    with session_scope(store_url) as s:
        update_connection(s, box, conn.id, config={}, secrets={})
    with session_scope(store_url) as s:
        got = get_connection(s, conn.id)
        assert got.config == {"base_url": "http://127.0.0.1:9"}
        assert connection_secrets(box, got) == {"api_key": "k"}


def test_unknown_id_is_not_found(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        with pytest.raises(NotFoundError) as info:
            get_connection(s, "nope")
        assert "nope" in str(info.value)
        with pytest.raises(NotFoundError):
            update_connection(s, box, "nope", config={"a": 1})
        with pytest.raises(NotFoundError):
            remove_connection(s, "nope")
    assert issubclass(NotFoundError, UsageError)


def _count(s: Session, model: type) -> int:
    return int(s.scalar(select(func.count()).select_from(model)) or 0)


CHILDREN = (OAuthToken, SyncDefinition, SyncRun, SyncCursor, WebhookEvent)


def test_remove_cascades_to_dependent_rows(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        doomed = add(s, box, "doomed")
        kept = add(s, box, "kept")
        for conn in (doomed, kept):
            s.add(OAuthToken(connection_id=conn.id, access_token=box.encrypt("at")))
            sync = SyncDefinition(connection_id=conn.id, stream="items")
            s.add(sync)
            s.flush()
            s.add(SyncCursor(sync_id=sync.id, value={"after": "x"}))
            s.add(SyncRun(sync_id=sync.id))
            s.add(SyncRun(sync_id=sync.id, status="succeeded"))
            s.add(
                WebhookEvent(
                    provider="sandbox", connection_id=conn.id, delivery_id="d1", payload={}
                )
            )
        s.add(DeadLetter(task="integrations.call", connection_id=doomed.id, error="boom"))
        doomed_id, kept_id = doomed.id, kept.id
    with session_scope(store_url) as s:
        before = {m: _count(s, m) for m in CHILDREN}
        assert before[SyncRun] == 4
    # A fresh session: nothing loaded, so only the database's ON DELETE CASCADE can do it.
    with session_scope(store_url) as s:
        remove_connection(s, doomed_id)
    with session_scope(store_url) as s:
        after = {m: _count(s, m) for m in CHILDREN}
        assert after == {m: n // 2 for m, n in before.items()}
        assert s.get(OAuthToken, kept_id) is not None
        assert s.scalar(select(SyncDefinition.connection_id)) == kept_id
        assert s.scalar(select(WebhookEvent.connection_id)) == kept_id
        # Dead letters outlive their connection.
        assert _count(s, DeadLetter) == 1
        assert [c.id for c in list_connections(s)] == [kept_id]


def test_remove_cascades_with_children_loaded(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        conn = add(s, box)
        sync = SyncDefinition(connection_id=conn.id, stream="items")
        s.add(sync)
        s.flush()
        s.add(SyncRun(sync_id=sync.id))
    with session_scope(store_url) as s:
        loaded = get_connection(s, conn.id)
        assert len(loaded.syncs) == 1
        assert len(loaded.syncs[0].runs) == 1
        remove_connection(s, conn.id)
    with session_scope(store_url) as s:
        assert [_count(s, m) for m in (Connection, SyncDefinition, SyncRun)] == [0, 0, 0]


def test_foreign_keys_enforced(store_url: str, box: SecretBox) -> None:
    from spark_integrations.errors import StoreError

    with (
        pytest.raises(StoreError, match=r"refused a statement \(IntegrityError: "),
        session_scope(store_url) as s,
    ):
        s.add(SyncDefinition(connection_id="no-such-connection", stream="items"))
        s.flush()


def test_an_unreachable_store_is_one_sentence_without_password_or_sql() -> None:
    from spark_integrations.errors import StoreError
    from spark_integrations.store.engine import dispose_engines

    url = "postgresql+psycopg://fleet:hunter2@127.0.0.1:1/nowhere?connect_timeout=2"
    try:
        with pytest.raises(StoreError) as info, session_scope(url) as s:
            s.execute(select(Connection.id).where(Connection.name == "secret-name"))
    finally:
        dispose_engines(url)
    message = str(info.value)
    assert message.startswith("the store at postgresql+psycopg://fleet:***@127.0.0.1:1/")
    assert "is unreachable (OperationalError: " in message
    assert "hunter2" not in message and "secret-name" not in message and "SELECT" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- secrets at rest -----------------------------------------------------------------------------


def test_database_files_hold_no_plaintext_secret(sqlite_store: str, box: SecretBox) -> None:
    with session_scope(sqlite_store) as s:
        conn = add(
            s,
            box,
            "marker-name-4b1d",
            secrets={"api_key": PLAIN_SECRET, "password": PLAIN_SECRET + "-pw"},
        )
        s.add(OAuthToken(connection_id=conn.id, access_token=box.encrypt(PLAIN_SECRET + "-at")))
    with session_scope(sqlite_store) as s:
        update_connection(s, box, conn.id, secrets={"webhook_secret": PLAIN_SECRET + "-wh"})
    db = Path(make_url(sqlite_store).database or "")
    files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    raw = b"".join(p.read_bytes() for p in files)
    # The scan sees what was written: the (non-secret) name is there.
    assert b"marker-name-4b1d" in raw
    assert PLAIN_SECRET.encode() not in raw
    assert PLAIN_SECRET.encode("utf-16-le") not in raw


def test_stored_credentials_are_fernet_tokens(store_url: str, box: SecretBox) -> None:
    with session_scope(store_url) as s:
        conn = add(s, box, secrets={"api_key": PLAIN_SECRET})
    with session_scope(store_url) as s:
        raw = s.scalar(select(Connection.credentials).where(Connection.id == conn.id))
        assert raw is not None
        assert PLAIN_SECRET.encode() not in bytes(raw)
        assert box.decrypt_json(bytes(raw)) == {"api_key": PLAIN_SECRET}


def test_model_reprs_hold_no_secret(box: SecretBox) -> None:
    credentials = box.encrypt_json({"api_key": PLAIN_SECRET})
    access = box.encrypt("access-token-value")
    refresh = box.encrypt("refresh-token-value")
    conn = Connection(
        id="c1", provider="sandbox", name="n", config={}, credentials=credentials, status="active"
    )
    token = OAuthToken(connection_id="c1", access_token=access, refresh_token=refresh, version=3)
    for text in (repr(conn), repr(token)):
        assert PLAIN_SECRET not in text
        assert credentials.decode() not in text
        assert access.decode() not in text
        assert refresh.decode() not in text
        assert "access-token-value" not in text
    assert "c1" in repr(conn)
    assert "version=3" in repr(token)


# --- timestamps ----------------------------------------------------------------------------------


def test_datetimes_come_back_aware_in_utc(store_url: str, box: SecretBox) -> None:
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2030, 5, 17, 14, 30, 15, 123456, tzinfo=plus_two)
    with session_scope(store_url) as s:
        conn = add(s, box)
        sync = SyncDefinition(connection_id=conn.id, stream="items", next_run_at=when)
        s.add(sync)
        s.flush()
        sync_id = sync.id
    with session_scope(store_url) as s:
        got = s.get(SyncDefinition, sync_id)
        assert got is not None
        assert got.next_run_at is not None
        assert got.next_run_at.tzinfo is not None
        assert got.next_run_at.utcoffset() == timedelta(0)
        assert got.next_run_at == when
        assert got.created_at.tzinfo is not None
        # Comparisons in SQL work across zones.
        due = s.scalars(
            select(SyncDefinition.id).where(
                SyncDefinition.next_run_at <= datetime(2030, 5, 17, 12, 30, 15, 123456, tzinfo=UTC)
            )
        ).all()
        assert due == [sync_id]
        early = datetime(2030, 5, 17, 12, 30, 15, tzinfo=UTC)
        assert (
            s.scalars(select(SyncDefinition.id).where(SyncDefinition.next_run_at <= early)).all()
            == []
        )


def test_naive_datetime_refused(store_url: str, box: SecretBox) -> None:
    with pytest.raises(StatementError) as info, session_scope(store_url) as s:
        conn = add(s, box)
        s.add(SyncDefinition(connection_id=conn.id, stream="i", next_run_at=datetime(2030, 1, 1)))
        s.flush()
    assert isinstance(info.value.orig, ValueError)
    assert "naive" in str(info.value)


def test_utc_datetime_type_directly() -> None:
    from sqlalchemy.dialects import sqlite

    t = UTCDateTime()
    dialect = sqlite.dialect()
    with pytest.raises(ValueError):
        t.process_bind_param(datetime(2030, 1, 1), dialect)
    assert t.process_bind_param(None, dialect) is None
    assert t.process_result_value(None, dialect) is None
    bound = t.process_bind_param(
        datetime(2030, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), dialect
    )
    assert bound == datetime(2030, 1, 1, 0, tzinfo=UTC)
    assert bound is not None and bound.tzinfo == UTC
    read = t.process_result_value(datetime(2030, 1, 1), dialect)
    assert read == datetime(2030, 1, 1, tzinfo=UTC)


# --- SQLite settings -----------------------------------------------------------------------------


def test_sqlite_connection_pragmas(sqlite_store: str) -> None:
    with engine_for(sqlite_store).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert busy == SQLITE_BUSY_TIMEOUT_MS
        assert busy is not None and busy >= 5000


def test_engine_is_cached_per_process_and_url(sqlite_store: str) -> None:
    assert engine_for(sqlite_store) is engine_for(sqlite_store)
