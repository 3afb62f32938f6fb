"""Engines and sessions of the store, one engine per process, and its errors translated once.

An engine's pool must never cross a ``fork()``: a pool child of a prefork worker that used its
parent's connections would share sockets with it. The engines are dropped (without closing the
parent's connections) by the fleet's one reset after fork (:mod:`forks`), so a child builds its
own on first use.

:func:`session_scope` is the store's boundary: SQLAlchemy's ``DBAPIError`` (a store that cannot
be reached, a statement it refuses) leaves it as one :class:`errors.StoreError` sentence naming
the store (its password hidden) and the driver's reason, never the statement or its parameters.
Callers catch ``StoreError``, never a SQLAlchemy class.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from spark_integrations.errors import StoreError
from spark_integrations.forks import on_fork
from spark_integrations.settings import hide_password

__all__ = ["dispose_engines", "engine_for", "session_scope", "store_error"]

# SQLite is written by several processes at once (worker children, beat, gateway, command line):
# WAL keeps readers outside a transaction from blocking, and the busy timeout makes a writer
# wait for the lock instead of failing at once. Every session transaction starts with BEGIN
# IMMEDIATE (below), so it never has to upgrade a read lock (which fails at once with BUSY);
# the price is that transactions, reads included, queue behind a writer.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Seconds a new PostgreSQL connection may take before it fails (psycopg's connect_timeout).
PG_CONNECT_TIMEOUT = 5
#: A pooled PostgreSQL connection back in the pool for longer than this is pinged before it is
#: handed out (and replaced if the server dropped it); one used more recently is taken as
#: alive. A sync's pages follow each other within milliseconds: pinging before each would add
#: a round trip to every page. (A server restart within the window costs the next transaction
#: a StoreError, and the broken connection is replaced.)
PING_AFTER_IDLE = 1.0
_RETURNED_AT = "spark_returned_at"

_engines: dict[str, Engine] = {}
_makers: dict[str, sessionmaker[Session]] = {}
_lock = threading.Lock()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, open transactions (BEGIN IMMEDIATE below), so that two
    # writers queue on the busy timeout instead of one failing to upgrade a read lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    _wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _wal(cursor: Any) -> None:
    """Put the database in WAL mode (it stays so: the mode is kept in the file).

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once rather
    than waiting on the busy timeout when another process holds one (several processes opening
    a new store together, one of them migrating it): so the switch is retried here until the
    busy timeout, and skipped when the file is in WAL mode already.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _sqlite_on_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _ping_if_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it was idle (:data:`PING_AFTER_IDLE`)."""

    def returned(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get(_RETURNED_AT)
        if last is not None and time.monotonic() - last < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure: the pool replaces the connection
            raise DisconnectionError(f"the pooled connection failed a ping: {exc}") from exc

    event.listen(engine, "connect", returned)  # a new connection needs no ping
    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", checkout)


def _build(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    # A store host that drops packets (rather than refusing) must fail a connection in seconds,
    # not the system's TCP timeout: /readyz, webhook intake and the console answer 503 promptly.
    # A connect_timeout given in the URL wins.
    extra = {} if "connect_timeout" in url else {"connect_timeout": PG_CONNECT_TIMEOUT}
    engine = create_engine(url, pool_size=5, max_overflow=5, connect_args=extra)
    _ping_if_idle(engine)
    return engine


def engine_for(url: str) -> Engine:
    """This process's engine for ``url``, built on first use."""
    engine = _engines.get(url)
    if engine is None:
        with _lock:
            engine = _engines.get(url)
            if engine is None:
                engine = _engines[url] = _build(url)
                _makers[url] = sessionmaker(engine, expire_on_commit=False)
    return engine


@on_fork
def _forget_inherited() -> None:
    """After fork: forget the parent's engines without closing its connections."""
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _makers.clear()


def dispose_engines(url_contains: str) -> None:
    """Close and forget this process's engines whose URL contains ``url_contains`` (a store
    that is about to be dropped)."""
    with _lock:
        for url in [u for u in _engines if url_contains in u]:
            _engines.pop(url).dispose()
            _makers.pop(url, None)


def store_error(url: str, exc: DBAPIError) -> StoreError:
    """The one-sentence error for a failure of the store at ``url`` (no password, no SQL)."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else ""
    kind = type(exc).__name__
    detail = f"{kind}: {reason}" if reason else kind
    if isinstance(exc, OperationalError | InterfaceError):
        return StoreError(f"the store at {hide_password(url)} is unreachable ({detail}).")
    return StoreError(f"the store at {hide_password(url)} refused a statement ({detail}).")


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error.

    Raises:
        StoreError: the store failed (unreachable, or a statement refused); the transaction
            was rolled back.
    """
    engine_for(url)
    try:
        with _makers[url]() as session, session.begin():
            yield session
    except DBAPIError as exc:
        raise store_error(url, exc) from None
