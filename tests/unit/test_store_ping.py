"""store.engine on PostgreSQL: a pooled connection is pinged before use only after it sat idle
(PING_AFTER_IDLE), so back-to-back transactions (a sync's pages) cost no ping each; a connection
the server dropped while idle is replaced unseen, one dropped within the window costs one
transaction a StoreError, and the next gets a new connection."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from spark_integrations.errors import StoreError
from spark_integrations.store import engine as store_engine
from spark_integrations.store import engine_for, session_scope
from tests.conftest import PG_ADMIN_DSN

pytestmark = pytest.mark.server


def backend_pid(url: str) -> int:
    with session_scope(url) as session:
        pid: int = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def terminate(pid: int) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_back_to_back_transactions_are_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "PING_AFTER_IDLE", 3600.0)
    first = backend_pid(postgres_url)
    pings: list[object] = []
    original = engine_for(postgres_url).dialect.do_ping

    def ping(connection: object) -> bool:
        pings.append(connection)
        return bool(original(connection))

    monkeypatch.setattr(engine_for(postgres_url).dialect, "do_ping", ping)
    assert [backend_pid(postgres_url) for _ in range(5)] == [first] * 5
    assert pings == []


def test_an_idle_connection_dropped_by_the_server_is_replaced_unseen(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "PING_AFTER_IDLE", 0.0)  # every checkout counts as idle
    first = backend_pid(postgres_url)
    terminate(first)
    second = backend_pid(postgres_url)
    assert second != first


def test_a_connection_dropped_within_the_window_fails_one_transaction(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "PING_AFTER_IDLE", 3600.0)
    first = backend_pid(postgres_url)
    terminate(first)
    with pytest.raises(StoreError, match="unreachable"):
        backend_pid(postgres_url)
    assert backend_pid(postgres_url) != first
