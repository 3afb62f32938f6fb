"""The record store: what syncs delivered, one row per sync and primary key.

:func:`upsert_records` writes one page in the caller's transaction, so a sync can commit the
page's records and its cursor together: a page is either wholly stored with the position after
it, or not at all. Records whose content did not change are not written again (their
``content_hash`` matches); a page read twice (a retry, a resumed run, the inclusive filter's
boundary record) changes nothing.

A page is the hot path of every sync, so it is written with few statements and little per-row
work, in the driver's own SQL: each record is encoded to canonical JSON once (its stored text,
its hash and its key come from that one encoding). On PostgreSQL a page costs one statement
when its records are all new (the first sync: an ``INSERT ... ON CONFLICT DO NOTHING`` of the
whole page as arrays, answering which keys were new), one more to read the others' hashes, and
one to write those that changed. SQLite takes the same steps (the page's rows in one INSERT
answering which keys were new; the others' hashes read; the changed updated with
``executemany``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_integrations.store.driver import Driver
from spark_integrations.store.models import Record, SyncCursor
from spark_integrations.store.types import utcnow

__all__ = [
    "Upserted",
    "content_hash",
    "record_key",
    "save_cursor",
    "stored_records",
    "upsert_records",
]

#: Keys of one SELECT ... IN (...) when looking up a page's stored records (SQLite).
LOOKUP_CHUNK = 500

# One encoder, built once: ``json.dumps`` with any non-default argument builds a new encoder on
# every call, which costs more than encoding a small record.
_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
).encode


def record_key(value: Any) -> str:
    """The stored form of a primary key's value: canonical JSON text."""
    return _encode(value)


def content_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of a record's canonical JSON."""
    return hashlib.sha256(_encode(record).encode()).hexdigest()


@dataclass(frozen=True)
class Upserted:
    """What one page did to the record store."""

    new: int
    changed: int
    #: Records whose stored content is the same (left unwritten).
    unchanged: int
    #: ``(key, content hash)`` of each record new or changed, in the page's order.
    written_keys: tuple[tuple[str, str], ...] = ()
    #: Records left as stored because the stored version is newer (a slower, older read).
    stale: int = 0
    #: Keys this page inserted (never stored for the sync before), in the page's order: what
    #: a destination delivering only new records (``--deliver new``) sends.
    new_keys: tuple[str, ...] = ()

    @property
    def written(self) -> int:
        """Records new or changed: what a run counts as its ``records``."""
        return self.new + self.changed


@dataclass(frozen=True)
class _Incoming:
    """One record of the page: as read, its canonical JSON and that text's hash."""

    record: Mapping[str, Any]
    text: str
    digest: str


#: A stored record seen by the lookup: its hash, and its data when it differs (else None).
_Stored = tuple[str, Any]


def upsert_records(
    session: Session,
    sync_id: str,
    keyed: Iterable[tuple[Any, Mapping[str, Any]]],
    *,
    version: Callable[[Mapping[str, Any]], Any] | None = None,
) -> Upserted:
    """Insert new records and update changed ones, in the caller's transaction.

    Args:
        session: the transaction the caller commits (with the cursor).
        sync_id: the sync the records belong to.
        keyed: ``(primary key value, record)`` pairs; a key repeated within the page keeps its
            last record (the provider's latest).
        version: a record's replication value; when given, a changed record whose stored
            version is greater is left alone (a backfill that read it before an incremental
            run stored a newer one must not bring the old one back). Two runs of one sync may
            write the same records (a backfill beside an incremental run): with versions to
            compare, the stored rows are locked (PostgreSQL: ``FOR UPDATE``, in key order in
            every run, as the new rows are inserted) so a newer version cannot land between
            the check and the write.
    """
    latest: dict[str, _Incoming] = {}
    for key_value, record in keyed:
        text = _encode(record)
        latest[_encode(key_value)] = _Incoming(
            record, text, hashlib.sha256(text.encode()).hexdigest()
        )
    if not latest:
        return Upserted(0, 0, 0)
    driver = Driver(session)
    store = _Postgres(driver, sync_id) if driver.postgres else _Sqlite(driver, sync_id)
    new, stored = store.insert_or_look_up(latest, lock=version is not None)
    changed = [k for k, (digest, _) in stored.items() if digest != latest[k].digest]
    stale = 0
    if changed and version is not None:
        newer = _newer(driver, latest, stored, changed, version)
        stale = len(newer)
        changed = [k for k in changed if k not in newer]
    if changed:
        store.update(latest, changed)
    written = set(changed)
    written_keys = tuple(
        (key, item.digest) for key, item in latest.items() if key in new or key in written
    )
    return Upserted(
        len(new),
        len(changed),
        len(latest) - len(new) - len(changed) - stale,
        written_keys=written_keys,
        stale=stale,
        new_keys=tuple(key for key in latest if key in new),
    )


def _newer(
    driver: Driver,
    latest: Mapping[str, _Incoming],
    stored: Mapping[str, _Stored],
    changed: list[str],
    version: Callable[[Mapping[str, Any]], Any],
) -> set[str]:
    """Keys among ``changed`` whose stored record has a greater version than the incoming."""
    newer: set[str] = set()
    for key in changed:
        mine, theirs = version(latest[key].record), version(driver.loads(stored[key][1]))
        if mine is None or theirs is None:
            continue
        try:
            if theirs > mine:
                newer.add(key)
        except TypeError:
            if str(theirs) > str(mine):
                newer.add(key)
    return newer


class _Postgres:
    """A page's statements on PostgreSQL: the page travels as arrays, one statement each."""

    # Keys in Python's order in every run: two runs inserting the same new keys take them in
    # the same order (no deadlock), then lock the others in that order too.
    INSERT = (
        "INSERT INTO records (sync_id, key, data, content_hash, first_seen_at, last_changed_at) "
        "SELECT %(sync_id)s, t.key, CAST(t.data AS json), t.hash, %(now)s, %(now)s "
        "FROM unnest(CAST(%(keys)b AS varchar[]), CAST(%(data)b AS text[]), "
        "CAST(%(hashes)b AS varchar[])) WITH ORDINALITY AS t(key, data, hash, n) "
        "ORDER BY t.n ON CONFLICT (sync_id, key) DO NOTHING RETURNING key"
    )
    # PostgreSQL plans ``sync_id = :s AND key IN (...)`` from statistics that do not know a
    # sync still being filled (a new sync, a table not yet analysed): it then takes the sync's
    # whole index range and filters the keys, so each page costs as much as the records already
    # stored and a first sync grows quadratic. One index probe per key, forced by a lateral
    # join, is independent of statistics. The stored data comes back only where the hash
    # differs (for the version check).
    LOOKUP = (
        "SELECT r.key, r.content_hash, "
        "CASE WHEN r.content_hash <> k.hash THEN r.data END "
        "FROM unnest(CAST(%(keys)b AS varchar[]), CAST(%(hashes)b AS varchar[])) "
        "WITH ORDINALITY AS k(key, hash, n) "
        "CROSS JOIN LATERAL (SELECT key, content_hash, data FROM records "
        "WHERE sync_id = %(sync_id)s AND key = k.key {lock}) AS r ORDER BY k.n"
    )
    UPDATE = (
        "UPDATE records SET data = CAST(%(data)s AS json), content_hash = %(hash)s, "
        "last_changed_at = %(now)s WHERE sync_id = %(sync_id)s AND key = %(key)s"
    )

    def __init__(self, driver: Driver, sync_id: str) -> None:
        self.conn = driver.conn
        self.sync_id = sync_id
        self.now = driver.stamp(utcnow())

    def insert_or_look_up(
        self, latest: Mapping[str, _Incoming], *, lock: bool
    ) -> tuple[set[str], dict[str, _Stored]]:
        """Insert the new records; the keys inserted, and the others' stored hashes."""
        keys = sorted(latest)
        rows = self.conn.exec_driver_sql(
            self.INSERT,
            {
                "sync_id": self.sync_id,
                "now": self.now,
                "keys": keys,
                "data": [latest[k].text for k in keys],
                "hashes": [latest[k].digest for k in keys],
            },
        )
        new = set(rows.scalars().all())
        others = [k for k in keys if k not in new]
        if not others:
            return new, {}
        rows = self.conn.exec_driver_sql(
            self.LOOKUP.format(lock="FOR UPDATE" if lock else "OFFSET 0"),
            {
                "sync_id": self.sync_id,
                "keys": others,
                "hashes": [latest[k].digest for k in others],
            },
        )
        return new, {key: (digest, data) for key, digest, data in rows}

    def update(self, latest: Mapping[str, _Incoming], changed: list[str]) -> None:
        """Write the changed records (one pipelined round trip)."""
        self.conn.exec_driver_sql(
            self.UPDATE,
            [
                {
                    "data": latest[k].text,
                    "hash": latest[k].digest,
                    "now": self.now,
                    "sync_id": self.sync_id,
                    "key": k,
                }
                for k in sorted(changed)
            ],
        )


class _Sqlite:
    """A page's statements on SQLite: the new records inserted first (rows of one statement,
    which answers which keys were new), then the others' hashes read."""

    #: Records of one INSERT (six parameters each, far below SQLite's limit of 32,766).
    INSERT_CHUNK = 500
    INSERT = (
        "INSERT INTO records (sync_id, key, data, content_hash, first_seen_at, last_changed_at) "
        "VALUES {rows} ON CONFLICT (sync_id, key) DO NOTHING RETURNING key"
    )
    UPDATE = (
        "UPDATE records SET data = ?, content_hash = ?, last_changed_at = ? "
        "WHERE sync_id = ? AND key = ?"
    )

    def __init__(self, driver: Driver, sync_id: str) -> None:
        self.conn = driver.conn
        self.sync_id = sync_id
        self.now = driver.stamp(utcnow())

    def insert_or_look_up(
        self, latest: Mapping[str, _Incoming], *, lock: bool
    ) -> tuple[set[str], dict[str, _Stored]]:
        """Insert the new records; the keys inserted, and the others' stored hashes. (SQLite's
        writers are serialised by ``BEGIN IMMEDIATE``: nothing lands in between.)"""
        keys = list(latest)
        new: set[str] = set()
        for start in range(0, len(keys), self.INSERT_CHUNK):
            chunk = keys[start : start + self.INSERT_CHUNK]
            values: list[Any] = []
            for k in chunk:
                item = latest[k]
                values += (self.sync_id, k, item.text, item.digest, self.now, self.now)
            rows = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
            inserted = self.conn.exec_driver_sql(self.INSERT.format(rows=rows), tuple(values))
            new.update(inserted.scalars().all())
        others = [k for k in keys if k not in new]
        stored: dict[str, _Stored] = {}
        for start in range(0, len(others), LOOKUP_CHUNK):
            chunk = others[start : start + LOOKUP_CHUNK]
            found = self.conn.exec_driver_sql(
                "SELECT key, content_hash, data FROM records WHERE sync_id = ? AND key IN "
                f"({', '.join('?' * len(chunk))})",
                (self.sync_id, *chunk),
            )
            for key, digest, data in found:
                stored[key] = (digest, None if digest == latest[key].digest else data)
        return new, stored

    def update(self, latest: Mapping[str, _Incoming], changed: list[str]) -> None:
        """Write the changed records."""
        self.conn.exec_driver_sql(
            self.UPDATE,
            [
                (latest[k].text, latest[k].digest, self.now, self.sync_id, k)
                for k in sorted(changed)
            ],
        )


def save_cursor(session: Session, sync_id: str, value: Any) -> None:
    """Store a sync's cursor in the caller's transaction (with the page it follows)."""
    cursor = session.get(SyncCursor, sync_id)
    if cursor is None:
        session.add(SyncCursor(sync_id=sync_id, value=value))
    else:
        cursor.value = value
    session.flush()


def stored_records(session: Session, sync_id: str, *, limit: int | None = None) -> Sequence[Record]:
    """A sync's records, oldest first (``records list``)."""
    stmt = (
        select(Record).where(Record.sync_id == sync_id).order_by(Record.first_seen_at, Record.key)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()
