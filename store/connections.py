"""Reading and writing connections, with their secrets encrypted on the way in.

A connection's endpoint keys say where its credentials are sent: its URLs (``base_url``,
``token_url``, ``authorize_url``) and whatever other keys its connector declares
(``ConnectorDeclaration.endpoint_config_keys``: a subdomain, a region, another URL), which the
caller passes in (the store knows no connector). Changing one is allowed only with the
connection's secrets given again in the same update, so whoever may edit the config cannot send
stored credentials elsewhere; its OAuth tokens are dropped and its unfinished connect flows
ended, since they belong to the old endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spark_integrations.constants import CONNECTION_URL_KEYS
from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store.crypto import SecretBox
from spark_integrations.store.models import Connection, OAuthFlow, OAuthToken
from spark_integrations.store.types import utcnow

__all__ = [
    "add_connection",
    "connection_secrets",
    "connection_view",
    "get_connection",
    "list_connections",
    "merge_config",
    "moved_endpoints",
    "remove_connection",
    "update_connection",
]

# Secrets that never travel to the provider's endpoints (the signing secret of incoming
# webhooks): a change of URL does not need them again.
_INBOUND_SECRETS = frozenset({"webhook_secret"})


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


def moved_endpoints(
    current: Mapping[str, Any],
    patch: Mapping[str, Any],
    endpoint_keys: Iterable[str] = CONNECTION_URL_KEYS,
) -> list[str]:
    """The endpoint keys ``patch`` changes, in the order of ``endpoint_keys`` (the connector's
    ``endpoint_keys()``; by default the URLs: ``base_url``, ``authorize_url``, ``token_url``)."""
    merged = merge_config(current, patch)
    return [key for key in endpoint_keys if merged.get(key) != current.get(key)]


def update_connection(
    session: Session,
    box: SecretBox,
    connection_id: str,
    *,
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    name: str | None = None,
    endpoint_keys: Iterable[str] = CONNECTION_URL_KEYS,
) -> Connection:
    """Merge ``config`` into the connection's config (a ``None`` value removes a key) and
    ``secrets`` into its secrets.

    A change of endpoint (:func:`moved_endpoints`) needs every secret the connection holds (but
    ``webhook_secret``) given again in ``secrets``; it drops the connection's OAuth tokens and
    ends its unfinished connect flows. The caller sets the status that follows.

    Args:
        endpoint_keys: the config keys that decide where the connection's requests go: its
            connector's ``endpoint_keys()`` (by default the URLs alone).

    Raises:
        UsageError: the name is taken, or an endpoint changes without the secrets given again.
    """
    conn = get_connection(session, connection_id)
    moved = moved_endpoints(conn.config, config or {}, endpoint_keys)
    current = connection_secrets(box, conn) if secrets or moved else {}
    if moved:
        missing = sorted(set(current) - _INBOUND_SECRETS - set(secrets or {}))
        if missing:
            again = " ".join(f"--secret {key}" for key in missing)
            raise UsageError(
                f"changing {moved[0]} changes where the connection's credentials are sent: give "
                f"its secrets again in the same update ({again})."
            )
    if name is not None and name != conn.name:
        if _name_taken(session, name, exclude_id=conn.id):
            raise UsageError(f"a connection named {name!r} exists already.")
        conn.name = name
    if config:
        conn.config = merge_config(conn.config, config)
    if secrets:
        current.update(secrets)
        conn.credentials = box.encrypt_json(current)
    if moved:
        session.execute(delete(OAuthToken).where(OAuthToken.connection_id == conn.id))
        session.execute(
            update(OAuthFlow)
            .where(
                OAuthFlow.connection_id == conn.id,
                OAuthFlow.status.in_(("issued", "authorizing")),
            )
            .values(
                status="failed", error=f"the connection's {moved[0]} changed.", finished_at=utcnow()
            )
            .execution_options(synchronize_session=False)
        )
        session.expire(conn, ["token"])
    session.flush()
    return conn


def remove_connection(session: Session, connection_id: str) -> None:
    """Delete a connection; its tokens, syncs, cursors, runs and webhook events go with it."""
    conn = get_connection(session, connection_id)
    session.delete(conn)
    session.flush()
