"""Bring a store to the newest migration, or tell where it stands.

Several processes of the fleet may start at once and each bring the embedded store up to date,
so an upgrade holds a lock for its whole run: an advisory lock on PostgreSQL, a file lock beside
the database file on SQLite.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from spark_integrations.store.engine import engine_for

__all__ = ["alembic_config", "current_revision", "head_revision", "is_at_head", "upgrade"]

# Any fixed 64-bit number, the same in every process of the fleet.
_PG_LOCK_KEY = 0x5350_4B49_4E54  # "SPKINT"


def alembic_config() -> Config:
    """An Alembic config pointing at this package's scripts (works from a wheel and a checkout)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    return cfg


def head_revision() -> str:
    """The newest migration this version of the fleet ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    """The migration the store at ``url`` is at, or None for an empty store."""
    with engine_for(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_at_head(url: str) -> bool:
    """True when the store at ``url`` is at the newest migration."""
    return current_revision(url) == head_revision()


@contextmanager
def _upgrade_lock(url: str, conn: Connection) -> Iterator[None]:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
        return
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(url: str, revision: str = "head") -> str:
    """Migrate the store at ``url`` to ``revision`` (default the newest); return where it ends."""
    cfg = alembic_config()
    engine = engine_for(url)
    if engine.dialect.name == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    with engine.connect() as lock_conn, _upgrade_lock(url, lock_conn), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(url) or "base"


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the store at ``url`` back to ``revision`` (tests and operators' last resort)."""
    cfg = alembic_config()
    engine = engine_for(url)
    with engine.connect() as lock_conn, _upgrade_lock(url, lock_conn), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
