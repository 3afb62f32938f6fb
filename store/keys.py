"""Re-encrypting every stored secret under the newest key, online and resumable (``keys rotate``).

Every ``LargeBinary`` column of the store holds a Fernet token (that is the store's convention),
so the columns to rotate are discovered from the metadata and a new encrypted column is rotated
without a change here.

Each table is walked in primary-key order, one batch at a time (keyset pagination), and each
batch is one short write transaction of compare-and-set updates: ``UPDATE t SET col = :new
WHERE pk = :pk AND col = :old``. So:

* the rotation runs while the fleet works, and locks a batch's rows only for the moment of
  its updates;
* it can be killed at any point: a committed row holds a token of the newest key, an
  uncommitted one still holds its old token, and both decrypt under the configured key list;
* a concurrent writer (a token refresh) that replaced a value between the read and the update
  wins: its value stays, and is counted as changed concurrently;
* a run again skips every value the newest key already decrypts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Column, LargeBinary, MetaData, Table, bindparam, select, tuple_, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from spark_integrations.errors import SecretError, StoreError
from spark_integrations.store.crypto import SecretBox
from spark_integrations.store.models import Base

__all__ = [
    "ColumnCounts",
    "EncryptedTable",
    "RotationProgress",
    "RotationReport",
    "encrypted_tables",
    "rotate_secrets",
]

SessionFactory = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True)
class EncryptedTable:
    """A table of the store with its primary key and the columns holding Fernet tokens."""

    table: Table
    primary_key: tuple[Column[Any], ...]
    columns: tuple[Column[Any], ...]

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    @property
    def column_names(self) -> tuple[str, ...]:
        """``table.column`` for each encrypted column."""
        return tuple(f"{self.table.name}.{c.name}" for c in self.columns)


def _is_encrypted(column: Column[Any]) -> bool:
    kind = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    return isinstance(kind, LargeBinary)


def encrypted_tables(metadata: MetaData = Base.metadata) -> list[EncryptedTable]:
    """Every table holding encrypted columns (its ``LargeBinary`` ones), in dependency order."""
    found = []
    for table in metadata.sorted_tables:
        columns = tuple(c for c in table.columns if _is_encrypted(c))
        if not columns:
            continue
        primary_key = tuple(table.primary_key.columns)
        if not primary_key:
            raise StoreError(
                f"table {table.name} holds encrypted columns but has no primary key, "
                "so keys rotate cannot walk it."
            )
        found.append(EncryptedTable(table, primary_key, columns))
    return found


@dataclass
class ColumnCounts:
    """What a rotation did to one encrypted column; each count is of non-null values."""

    examined: int = 0
    reencrypted: int = 0
    already_current: int = 0
    changed_concurrently: int = 0

    def add(self, other: ColumnCounts) -> None:
        """Add another column's counts to these."""
        self.examined += other.examined
        self.reencrypted += other.reencrypted
        self.already_current += other.already_current
        self.changed_concurrently += other.changed_concurrently

    def as_dict(self) -> dict[str, int]:
        """The counts as a JSON object."""
        return {
            "examined": self.examined,
            "reencrypted": self.reencrypted,
            "already_current": self.already_current,
            "changed_concurrently": self.changed_concurrently,
        }


@dataclass
class RotationReport:
    """The counts of a rotation, per ``table.column`` and in total."""

    columns: dict[str, ColumnCounts] = field(default_factory=dict)
    rows: int = 0

    @property
    def total(self) -> ColumnCounts:
        """The counts of every column added up."""
        out = ColumnCounts()
        for counts in self.columns.values():
            out.add(counts)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON object: totals, rows walked, and per-column counts."""
        return {
            **self.total.as_dict(),
            "rows": self.rows,
            "columns": {name: c.as_dict() for name, c in self.columns.items()},
        }


@dataclass(frozen=True)
class RotationProgress:
    """Handed to ``on_progress`` after each committed batch."""

    table: EncryptedTable
    #: Rows of this table walked so far in this run.
    rows: int
    report: RotationReport


def _after(primary_key: Sequence[Column[Any]], last: Sequence[Any]) -> ColumnElement[bool]:
    if len(primary_key) == 1:
        return cast(ColumnElement[bool], primary_key[0] > last[0])
    return tuple_(*primary_key) > tuple_(*last)


def _batches(
    session_factory: SessionFactory, enc: EncryptedTable, batch_size: int
) -> Iterator[Sequence[Any]]:
    """The table's rows (primary key, then encrypted columns), a batch per short transaction."""
    width = len(enc.primary_key)
    stmt = select(*enc.primary_key, *enc.columns).order_by(*enc.primary_key).limit(batch_size)
    last: Sequence[Any] | None = None
    while True:
        page = stmt if last is None else stmt.where(_after(enc.primary_key, last))
        with session_factory() as session:
            rows = session.execute(page).all()
        if not rows:
            return
        yield rows
        if len(rows) < batch_size:
            return
        last = tuple(rows[-1][:width])


def _row_id(values: Sequence[Any]) -> str:
    return str(values[0]) if len(values) == 1 else "(" + ", ".join(map(str, values)) + ")"


def _rotate_batch(
    session_factory: SessionFactory,
    box: SecretBox,
    enc: EncryptedTable,
    rows: Sequence[Any],
    report: RotationReport,
) -> None:
    width = len(enc.primary_key)
    pk_names = [f"pk_{i}" for i in range(width)]
    writes: list[tuple[Column[Any], ColumnCounts, list[dict[str, Any]]]] = []
    for offset, column in enumerate(enc.columns, start=width):
        counts = report.columns[f"{enc.name}.{column.name}"]
        params = []
        for row in rows:
            token = row[offset]
            if token is None:
                continue
            token = bytes(token)
            counts.examined += 1
            if box.is_current(token):
                counts.already_current += 1
                continue
            try:
                new = box.rotate(token)
            except SecretError:
                raise SecretError(
                    f"{enc.name}.{column.name} of row {_row_id(row[:width])} cannot be "
                    "decrypted with any key of SPARK_INTEGRATIONS_SECRET_KEYS, so keys rotate "
                    "stopped there (was the key that encrypted it removed?)."
                ) from None
            params.append(
                {**dict(zip(pk_names, row[:width], strict=True)), "old": token, "new": new}
            )
        if params:
            writes.append((column, counts, params))
    if not writes:
        return
    # Decryption happened above, outside the transaction: the write transaction holds its row
    # locks only for the updates themselves.
    with session_factory() as session:
        conn = session.connection()
        for column, counts, params in writes:
            where = [
                pk == bindparam(name) for pk, name in zip(enc.primary_key, pk_names, strict=True)
            ]
            stmt = (
                update(enc.table)
                .where(*where, column == bindparam("old"))
                .values({column.name: bindparam("new")})
            )
            written = conn.execute(stmt, params).rowcount
            counts.reencrypted += written
            counts.changed_concurrently += len(params) - written


def rotate_secrets(
    session_factory: SessionFactory,
    box: SecretBox,
    *,
    batch_size: int = 200,
    on_progress: Callable[[RotationProgress], None] | None = None,
    tables: Sequence[EncryptedTable] | None = None,
) -> RotationReport:
    """Re-encrypt every stored secret that the newest key cannot decrypt, under that key.

    Args:
        session_factory: makes a session in one transaction, committed when its block ends
            (``Runtime.session``, or ``lambda: session_scope(url)``).
        box: the configured keys, the newest first.
        batch_size: rows read, and at most rows updated, per transaction.
        on_progress: called after each committed batch.
        tables: the tables to walk; every encrypted table of the store by default.

    Raises:
        SecretError: a value no configured key decrypts, named by table, column and row id
            (batches before it stay committed).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport()
    walk = encrypted_tables() if tables is None else tables
    for enc in walk:
        for name in enc.column_names:
            report.columns[name] = ColumnCounts()
    for enc in walk:
        walked = 0
        for rows in _batches(session_factory, enc, batch_size):
            _rotate_batch(session_factory, box, enc, rows, report)
            walked += len(rows)
            report.rows += len(rows)
            if on_progress is not None:
                on_progress(RotationProgress(enc, walked, report))
    return report
