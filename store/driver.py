"""The store's hot path in the driver's own SQL: a sync page's records and its commit.

The ORM costs several times what the statements of a page cost the database, so the few
statements a page takes (:mod:`store.records`, :func:`store.runs.commit_page`) are written as
SQL and sent with ``Connection.exec_driver_sql``, in the session's own transaction. Errors
still leave through :func:`store.session_scope` as :class:`errors.StoreError`.

Statements are written once with ``:name`` parameters (SQLite's named style) and turned into
psycopg's ``%(name)s`` for PostgreSQL. Values go in and come out through the column types' own
processing, as the ORM would write and read them (JSON as psycopg's typed ``Json`` or SQLite's
text, timestamps in UTC, as text on SQLite).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import JSON, Connection, CursorResult
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from spark_integrations.store.types import UTCDateTime

__all__ = ["Driver"]

# A ``:name`` parameter, not a ``::type`` cast.
_NAMED = re.compile(r"(?<![:\w]):(\w+)")
_STAMP = UTCDateTime()
_JSON = JSON()


@cache
def _pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql)


@cache
def _processors(dialect: Dialect) -> tuple[Any, Any, Any]:
    """The bind processors of a timestamp and a JSON value, and JSON's result processor."""
    json_type = _JSON.dialect_impl(dialect)
    return (
        _STAMP.dialect_impl(dialect).bind_processor(dialect),
        json_type.bind_processor(dialect),
        json_type.result_processor(dialect, None),
    )


class Driver:
    """A session's connection, spoken to in SQL.

    Args:
        session: the caller's session; what it holds pending through the ORM is flushed first,
            so these statements see it as a query would.
    """

    def __init__(self, session: Session) -> None:
        session.flush()
        self.conn: Connection = session.connection()
        self.dialect = self.conn.dialect
        self.postgres = self.dialect.name == "postgresql"

    def run(self, sql: str, params: dict[str, Any] | list[dict[str, Any]]) -> CursorResult[Any]:
        """Execute ``sql`` (``:name`` parameters) once, or once per mapping of a list."""
        return self.conn.exec_driver_sql(_pyformat(sql) if self.postgres else sql, params)

    def stamp(self, value: datetime) -> Any:
        """A timestamp as a ``UTCDateTime`` column takes it on this backend."""
        process = _processors(self.dialect)[0]
        return value if process is None else process(value)

    def json(self, value: Any) -> Any:
        """A value for a JSON column, as the ORM writes it (None is JSON ``null``)."""
        process = _processors(self.dialect)[1]
        return value if process is None else process(value)

    def loads(self, stored: Any) -> Any:
        """A JSON column's value as the ORM reads it (psycopg parses ``json`` itself)."""
        process = _processors(self.dialect)[2]
        return stored if process is None else process(stored)
