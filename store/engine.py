"""Engines and sessions of the store, one engine per process.

An engine's pool must never cross a ``fork()``: a pool child of a prefork worker that used its
parent's connections would share sockets with it. :func:`engine_for` keys engines by process id,
so a forked child builds its own on first use, and :func:`dispose_inherited` lets a worker drop
what it inherited as soon as the child starts.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["dispose_inherited", "engine_for", "session_scope"]

# SQLite is written by several processes at once (worker children, beat, gateway, command line):
# WAL keeps readers outside a transaction from blocking, and the busy timeout makes a writer
# wait for the lock instead of failing at once. Every session transaction starts with BEGIN
# IMMEDIATE (below), so it never has to upgrade a read lock (which fails at once with BUSY);
# the price is that transactions, reads included, queue behind a writer.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[tuple[int, str], Engine] = {}
_makers: dict[tuple[int, str], sessionmaker[Session]] = {}
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


def _build(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def engine_for(url: str) -> Engine:
    """This process's engine for ``url``, built on first use."""
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = _build(url)
                _makers[key] = sessionmaker(engine, expire_on_commit=False)
    return engine


def dispose_inherited() -> None:
    """Forget engines built by a parent process, without closing the parent's connections."""
    pid = os.getpid()
    with _lock:
        for key in [k for k in _engines if k[0] != pid]:
            _engines.pop(key).dispose(close=False)
            _makers.pop(key, None)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    engine_for(url)
    maker = _makers[(os.getpid(), url)]
    with maker() as session, session.begin():
        yield session
