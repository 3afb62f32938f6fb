"""What automagik-spark sees through the gateway's ``/spark`` surface: its key and the exposures.

The key spark presents (``x-api-key``) is 32 random bytes, printed once by ``expose key``; only
its SHA-256 is stored, and issuing a new one removes the old (rotation), so at most one key is
valid at a time. A plain digest is enough: the key is random, not a password a person chose.

An exposure names an action of a connection (with fixed params) or a sync, under a slug that
spark uses as the flow's id and in its run URL. Nothing is exposed until an operator says so.
The caller (the ``expose`` commands) checks the action against its connector and writes the
description; this module imports no connector.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store.models import Connection, Exposure, SparkKey, SyncDefinition

__all__ = [
    "MAX_NAME",
    "add_exposure",
    "check_spark_key",
    "default_action_name",
    "default_sync_name",
    "exposure_view",
    "get_exposure",
    "issue_spark_key",
    "key_digest",
    "list_exposures",
    "remove_exposure",
    "slug",
]

#: Longest exposure name (the column's width).
MAX_NAME = 200
_NAME = re.compile(r"[a-z0-9_-]+")
_NOT_SLUG = re.compile(r"[^a-z0-9_-]+")


def key_digest(key: str) -> str:
    """The SHA-256 hex digest a key is stored and compared as."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def issue_spark_key(session: Session) -> str:
    """A new key for spark: its digest stored, every earlier key removed; the key itself is
    returned once and kept nowhere."""
    key = secrets.token_urlsafe(32)
    session.execute(delete(SparkKey))
    session.add(SparkKey(key_hash=key_digest(key)))
    session.flush()
    return key


def check_spark_key(session: Session, presented: str) -> bool | None:
    """Whether ``presented`` is the current key (digests compared in constant time); None when
    no key has been issued."""
    stored = session.scalars(select(SparkKey.key_hash)).all()
    if not stored:
        return None
    given = key_digest(presented)
    # Every stored digest is compared, so the time taken does not depend on which matched.
    return any([hmac.compare_digest(given, digest) for digest in stored])


def slug(text: str) -> str:
    """``text`` as a name's part: lower case, runs of other characters as one ``-``."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def default_action_name(connection_name: str, action: str) -> str:
    """``<connection name>-<action>`` as a slug."""
    return slug(f"{connection_name}-{action}")[:MAX_NAME]


def default_sync_name(stream: str, sync_id: str) -> str:
    """``sync-<stream>-<first 8 characters of the sync's id>`` as a slug."""
    return slug(f"sync-{stream}-{sync_id[:8]}")[:MAX_NAME]


#: Words spark 0.3.7 reads in a failed scheduled run's error text (which holds the run's URL,
#: so the name) as a network failure, and retries the run for: a name holding one could have a
#: failed run (an ``outcome_unknown`` call among them) sent again by spark.
SPARK_RETRY_WORDS = ("connection", "timeout")


def _check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise UsageError(
            f"the name {name[:60]!r} is not usable: give 1 to {MAX_NAME} characters among "
            "a-z, 0-9, '_' and '-' (spark puts it in a URL)."
        )
    for word in SPARK_RETRY_WORDS:
        if word in name:
            raise UsageError(
                f"the name {name!r} holds {word!r}, which spark 0.3.7 takes in a failed run's "
                "error for a network failure and runs the work again; give another with --name."
            )
    return name


def add_exposure(
    session: Session,
    *,
    name: str,
    description: str,
    connection_id: str | None = None,
    action: str | None = None,
    params: dict[str, Any] | None = None,
    sync_id: str | None = None,
) -> Exposure:
    """Expose an action of a connection (``connection_id`` and ``action``) or a sync.

    Raises:
        UsageError: the name is not a slug, or is taken; neither or both kinds given.
        NotFoundError: no such connection or sync.
    """
    _check_name(name)
    if (sync_id is None) == (action is None):
        raise UsageError("an exposure is an action of a connection or a sync, one of them.")
    if session.get(Exposure, name) is not None:
        raise UsageError(
            f"the name {name!r} is exposed already; give another with --name, or "
            f"`expose remove {name}` first."
        )
    if sync_id is not None:
        if session.get(SyncDefinition, sync_id) is None:
            raise NotFoundError(f"no sync {sync_id!r}; `syncs list` shows them.")
        exposure = Exposure(name=name, kind="sync", sync_id=sync_id, description=description)
    else:
        if connection_id is None or session.get(Connection, connection_id) is None:
            raise NotFoundError(f"no connection {connection_id!r}; `connections list` shows them.")
        exposure = Exposure(
            name=name,
            kind="action",
            connection_id=connection_id,
            action=action,
            params=dict(params or {}),
            description=description,
        )
    session.add(exposure)
    session.flush()
    return exposure


def get_exposure(session: Session, name: str) -> Exposure:
    """The exposure of that name, or NotFoundError.

    A name that is no slug is not looked up: none can be stored (and PostgreSQL refuses a NUL
    in a query, which would read as a store failure)."""
    valid = 0 < len(name) <= MAX_NAME and _NAME.fullmatch(name)
    exposure = session.get(Exposure, name) if valid else None
    if exposure is None:
        raise NotFoundError(f"nothing is exposed as {name[:60]!r}; `expose list` shows them.")
    return exposure


def list_exposures(session: Session) -> Sequence[Exposure]:
    """Every exposure, by name."""
    return session.scalars(select(Exposure).order_by(Exposure.name)).all()


def remove_exposure(session: Session, name: str) -> None:
    """Stop exposing ``name`` (NotFoundError when nothing is exposed under it)."""
    session.delete(get_exposure(session, name))
    session.flush()


def exposure_view(exposure: Exposure) -> dict[str, Any]:
    """An exposure as ``expose list --json`` shows it."""
    return {
        "name": exposure.name,
        "kind": exposure.kind,
        "connection_id": exposure.connection_id,
        "action": exposure.action,
        "params": dict(exposure.params or {}),
        "sync_id": exposure.sync_id,
        "description": exposure.description,
    }
