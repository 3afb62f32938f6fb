"""Subscribers of the fleet's events: who hears of what, and how.

A subscriber names the event types it wants (:data:`constants.EVENT_TYPES`, or patterns of them
such as ``sync.*``) and where they go:

* ``url``: each event is posted to an ``https://`` URL (plain ``http://`` only to a loopback host
  or a host in ``SPARK_INTEGRATIONS_ALLOW_HTTP_HOSTS``, the rule of connections' URLs), signed
  per Standard Webhooks with the subscriber's ``whsec_`` secret, kept encrypted like every
  secret at rest (a Fernet token of the store's :class:`store.SecretBox`, so ``keys rotate``
  re-encrypts it too);
* ``spark``: each event runs a spark workflow through a spark connection, with the event as
  its input (spark has no endpoint that receives events).

The functions here take a store session; the command line (``subscribers ...``) calls them.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Collection, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spark_integrations.connectors.urlpolicy import url_problem
from spark_integrations.constants import EVENT_TYPES
from spark_integrations.destinations.spark import SPARK_PROVIDER
from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store import Connection, SecretBox
from spark_integrations.store.models_webhooks import OutboundDelivery, Subscriber
from spark_integrations.store.types import iso_z

__all__ = [
    "SECRET_PREFIX",
    "add_spark_subscriber",
    "add_url_subscriber",
    "check_events",
    "check_secret",
    "delivery_counts",
    "get_subscriber",
    "list_subscribers",
    "matches",
    "new_secret",
    "remove_subscriber",
    "set_enabled",
    "subscriber_view",
]

#: Standard Webhooks' secrets: ``whsec_`` and the base64 of 24 to 64 random bytes.
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
# An event type or a pattern of them: lower-case names, dots, underscores, and * for any run.
_PATTERN = re.compile(r"[a-z0-9_.*]{1,100}")
# The longest workflow id the store holds (store.models_webhooks.Subscriber.workflow_id).
_WORKFLOW_CHARS = 200


def check_events(raw: Iterable[str]) -> list[str]:
    """The event patterns a subscriber asks for, each known or matching a known type, without
    repeats; UsageError in one sentence listing the known types otherwise."""
    patterns: list[str] = []
    for item in raw:
        for part in item.split(","):
            pattern = part.strip()
            if not pattern:
                continue
            if not _PATTERN.fullmatch(pattern) or not any(
                fnmatchcase(kind, pattern) for kind in EVENT_TYPES
            ):
                raise UsageError(
                    f"unknown event type {pattern!r}; the known ones are "
                    f"{', '.join(EVENT_TYPES)} (a * matches any part, as in sync.*)."
                )
            if pattern not in patterns:
                patterns.append(pattern)
    if not patterns:
        raise UsageError(
            f"--events names no event type; the known ones are {', '.join(EVENT_TYPES)}."
        )
    return patterns


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """True when ``event_type`` is one a subscriber with ``patterns`` wants."""
    return any(fnmatchcase(event_type, pattern) for pattern in patterns)


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_secret(secret: str) -> str:
    """``secret`` when it is a Standard Webhooks secret (``whsec_`` and base64 of 24 to 64
    bytes); UsageError otherwise (the sentence never repeats the secret)."""
    body = secret.strip()
    if body.startswith(SECRET_PREFIX):
        body = body[len(SECRET_PREFIX) :]
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not secret.strip().startswith(SECRET_PREFIX) or not (
        MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES
    ):
        raise UsageError(
            f"--secret must be {SECRET_PREFIX} followed by the base64 of {MIN_SECRET_BYTES} to "
            f"{MAX_SECRET_BYTES} random bytes (leave it out and one is made for you)."
        )
    return SECRET_PREFIX + body


def add_url_subscriber(
    session: Session,
    box: SecretBox,
    *,
    url: str,
    events: Iterable[str],
    secret: str,
    http_hosts: Collection[str] = (),
) -> Subscriber:
    """Store a subscriber posting ``events`` to ``url``, signed with ``secret`` (kept sealed).

    Raises:
        UsageError: the URL is not one the fleet posts to, an event type is unknown, or the
            secret is not a Standard Webhooks secret.
    """
    problem = url_problem(url, http_hosts=http_hosts)
    if problem is not None:
        raise UsageError(f"the subscriber's URL {problem}.")
    subscriber = Subscriber(
        kind="url",
        url=url,
        events=check_events(events),
        secret=box.encrypt(check_secret(secret)),
        enabled=True,
    )
    session.add(subscriber)
    session.flush()
    return subscriber


def add_spark_subscriber(session: Session, *, target: str, events: Iterable[str]) -> Subscriber:
    """Store a subscriber running a spark workflow for ``events``; ``target`` is
    ``CONNECTION_ID:WORKFLOW_ID`` (the spark connection, and its workflow to run).

    Raises:
        UsageError: the target is malformed or its connection is no spark connection;
        NotFoundError: no such connection.
    """
    connection_id, sep, workflow_id = target.partition(":")
    connection_id, workflow_id = connection_id.strip(), workflow_id.strip()
    if (
        not sep
        or not connection_id
        or not workflow_id
        or ":" in workflow_id
        or len(workflow_id) > _WORKFLOW_CHARS
    ):
        raise UsageError(
            f"--spark takes CONNECTION_ID:WORKFLOW_ID (a spark connection and the workflow it "
            f"runs), not {target[:100]!r}."
        )
    patterns = check_events(events)
    conn = session.get(Connection, connection_id)
    if conn is None:
        raise NotFoundError(f"no connection has the id {connection_id!r}; `connections list`.")
    if conn.provider != SPARK_PROVIDER:
        raise UsageError(
            f"connection {connection_id} is a {conn.provider} connection; --spark needs a "
            "spark connection."
        )
    subscriber = Subscriber(
        kind="spark",
        events=patterns,
        spark_connection_id=connection_id,
        workflow_id=workflow_id,
        enabled=True,
    )
    session.add(subscriber)
    session.flush()
    return subscriber


def get_subscriber(session: Session, subscriber_id: str) -> Subscriber:
    """The subscriber with this id, or :class:`NotFoundError`."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFoundError(f"no subscriber has the id {subscriber_id!r}; `subscribers list`.")
    return subscriber


def list_subscribers(session: Session) -> list[Subscriber]:
    """Every subscriber, oldest first."""
    stmt = select(Subscriber).order_by(Subscriber.created_at, Subscriber.id)
    return list(session.scalars(stmt))


def remove_subscriber(session: Session, subscriber_id: str) -> None:
    """Delete a subscriber with its deliveries (pending ones are not sent)."""
    session.delete(get_subscriber(session, subscriber_id))
    session.flush()


def set_enabled(session: Session, subscriber_id: str, enabled: bool) -> Subscriber:
    """Enable or disable a subscriber (a disabled one is sent nothing; its pending deliveries
    fail when their turn comes)."""
    subscriber = get_subscriber(session, subscriber_id)
    subscriber.enabled = enabled
    return subscriber


def delivery_counts(session: Session) -> dict[str, dict[str, int]]:
    """Deliveries per subscriber and status: ``{subscriber_id: {"pending": n, ...}}``."""
    rows = session.execute(
        select(OutboundDelivery.subscriber_id, OutboundDelivery.status, func.count()).group_by(
            OutboundDelivery.subscriber_id, OutboundDelivery.status
        )
    )
    counts: dict[str, dict[str, int]] = {}
    for subscriber_id, status, n in rows:
        counts.setdefault(subscriber_id, {})[status] = int(n)
    return counts


def subscriber_view(subscriber: Subscriber, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """A subscriber as ``subscribers list --json`` shows it: never its secret."""
    counts = counts or {}
    return {
        "id": subscriber.id,
        "kind": subscriber.kind,
        "url": subscriber.url,
        "spark_connection_id": subscriber.spark_connection_id,
        "workflow_id": subscriber.workflow_id,
        "events": list(subscriber.events),
        "enabled": subscriber.enabled,
        "created_at": iso_z(subscriber.created_at),
        "deliveries": {s: counts.get(s, 0) for s in ("pending", "delivered", "failed")},
    }
