"""Reading and writing connections, with their secrets encrypted on the way in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store.crypto import SecretBox
from spark_integrations.store.models import Connection

__all__ = [
    "add_connection",
    "connection_secrets",
    "connection_view",
    "get_connection",
    "list_connections",
    "merge_config",
    "remove_connection",
    "update_connection",
]


def connection_view(conn: Connection) -> dict[str, Any]:
    """The public shape of a connection (CONTRACT.md): no config values, no secrets."""
    return {"id": conn.id, "provider": conn.provider, "name": conn.name, "status": conn.status}


def connection_secrets(box: SecretBox, conn: Connection) -> dict[str, str]:
    """Decrypt a connection's secrets (an empty dict when it holds none)."""
    if conn.credentials is None:
        return {}
    return {k: str(v) for k, v in box.decrypt_json(conn.credentials).items()}


def _name_taken(session: Session, name: str, exclude_id: str | None = None) -> bool:
    stmt = select(Connection.id).where(Connection.name == name)
    if exclude_id is not None:
        stmt = stmt.where(Connection.id != exclude_id)
    return session.scalar(stmt) is not None


def add_connection(
    session: Session,
    box: SecretBox,
    *,
    provider: str,
    name: str,
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    status: str,
) -> Connection:
    """Store a new connection; its name must be unused."""
    if _name_taken(session, name):
        raise UsageError(f"a connection named {name!r} exists already.")
    conn = Connection(
        provider=provider,
        name=name,
        config=dict(config),
        credentials=box.encrypt_json(dict(secrets)) if secrets else None,
        status=status,
    )
    session.add(conn)
    try:
        session.flush()
    except IntegrityError:
        raise UsageError(f"a connection named {name!r} exists already.") from None
    return conn


def get_connection(session: Session, connection_id: str) -> Connection:
    """The connection with this id, or :class:`NotFoundError`."""
    conn = session.get(Connection, connection_id)
    if conn is None:
        raise NotFoundError(f"no connection has the id {connection_id!r}.")
    return conn


def list_connections(session: Session) -> list[Connection]:
    """Every connection, oldest first."""
    return list(session.scalars(select(Connection).order_by(Connection.created_at, Connection.id)))


def merge_config(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with ``patch`` applied: a ``None`` value removes its key."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def update_connection(
    session: Session,
    box: SecretBox,
    connection_id: str,
    *,
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Connection:
    """Merge ``config`` into the connection's config (a ``None`` value removes a key) and
    ``secrets`` into its secrets."""
    conn = get_connection(session, connection_id)
    if name is not None and name != conn.name:
        if _name_taken(session, name, exclude_id=conn.id):
            raise UsageError(f"a connection named {name!r} exists already.")
        conn.name = name
    if config:
        conn.config = merge_config(conn.config, config)
    if secrets:
        current = connection_secrets(box, conn)
        current.update(secrets)
        conn.credentials = box.encrypt_json(current)
    session.flush()
    return conn


def remove_connection(session: Session, connection_id: str) -> None:
    """Delete a connection; its tokens, syncs, cursors, runs and webhook events go with it."""
    conn = get_connection(session, connection_id)
    session.delete(conn)
    session.flush()
