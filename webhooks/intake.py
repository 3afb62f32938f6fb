"""Intake of a provider's webhook delivery: verified, stored once, then handed to the workers.

:meth:`Intake.receive` does everything after the body is read (the gateway reads it, with its
size limit, in :mod:`gateway.webhooks`), in one thread and one short transaction:

1. the connection (cached a few seconds with its decrypted ``webhook_secret``, so a burst does
   not decrypt Fernet per request): unknown, of another provider than the path says, or of a
   connector without intake (``webhook_scheme`` None or ``none``) is a 404;
2. the scheme's checks (:func:`webhooks.schemes.verify`): a refusal is its 401 or 400; a
   handshake (Slack's challenge, Discord's PING, Graph's validation token) is answered at once,
   and nothing is stored or sent;
3. one ``INSERT ... ON CONFLICT DO NOTHING`` on (connection, delivery id), committed: a repeat
   inserts nothing and answers 2xx with ``duplicate`` true, in any number of gateway processes
   (the unique constraint decides); an unreachable store is a 503, so the sender retries;
4. only then ``integrations.process_webhook`` is sent, and the answer is 202.

The new row is written with ``enqueued_at`` set already, so the common path is one transaction;
when the send then fails, ``enqueued_at`` goes back to None and :func:`webhooks.sweep.sweep`
sends the task once the broker answers. After a failed send, sends are skipped for
:data:`BROKER_PAUSE` seconds (events are stored with ``enqueued_at`` None), so a broker that is
down costs each request nothing. A gateway that dies between its commit and its send leaves an
event marked as sent: the sweep sends it once it is older than its stale time.

Every outcome is counted (``metrics.count("webhooks", provider, outcome, reason)``) and each
refusal is logged with its reason, never with the secret, a signature or the body.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session

from spark_integrations import metrics
from spark_integrations.connectors.registry import discover_connectors
from spark_integrations.errors import SecretError, StoreError
from spark_integrations.store.connections import connection_secrets
from spark_integrations.store.crypto import SecretBox
from spark_integrations.store.models import Connection, WebhookEvent, new_id
from spark_integrations.store.types import utcnow
from spark_integrations.webhooks.schemes import Refused, Verified, verify
from spark_integrations.webhooks.sweep import mark_unsent

__all__ = ["BROKER_PAUSE", "CACHE_SECONDS", "Intake", "Reply", "provider_label"]

log = logging.getLogger("gateway")

SessionFactory = Callable[[], AbstractContextManager[Session]]

#: Seconds a connection and its secret are served from memory; an update (a new secret, the
#: connection removed) is seen within this time.
CACHE_SECONDS = 5.0
#: Connections kept in memory at most (the oldest entry goes first).
CACHE_ENTRIES = 4096
#: Seconds sends are skipped after one failed (the events wait for the sweep).
BROKER_PAUSE = 5.0
#: Longest connection id read from a path (ids are 36 characters).
MAX_ID = 64

NOT_FOUND = (
    "No connection {cid} of provider {provider} takes webhooks here; check the URL the provider "
    "was given."
)
STORE_DOWN = "The store cannot be reached, so nothing was stored; send the delivery again later."
SECRET_UNREADABLE = "The connection's signing secret cannot be read; nothing was stored."
UNSTORABLE = "The payload cannot be stored as JSON."


@dataclass(frozen=True)
class Reply:
    """What the gateway answers: a status, a body and its type."""

    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, value: Mapping[str, Any]) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(value, separators=(",", ":")).encode())

    @classmethod
    def detail(cls, status: int, sentence: str) -> Reply:
        """A refusal: ``{"detail": sentence}``."""
        return cls.json(status, {"detail": sentence})


@dataclass(frozen=True)
class _Known:
    """A connection as intake needs it, cached until ``until`` (monotonic)."""

    provider: str
    scheme: str | None
    secret: str | None
    until: float


class _ConnectionGoneError(Exception):
    """Raised when a cached connection was removed before its event could be stored."""


class Intake:
    """Webhook intake over one store, secret box and sender."""

    def __init__(
        self,
        sessions: SessionFactory,
        box: SecretBox,
        send: Callable[[str], None],
        *,
        tolerance: int,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
        broker_pause: float = BROKER_PAUSE,
    ) -> None:
        """Bind intake to the fleet.

        Args:
            sessions: opens one store transaction.
            box: decrypts connections' secrets.
            send: sends ``process_webhook`` for an event id; raises when it cannot.
            tolerance: seconds a signed timestamp may be away from ``clock``.
            clock: the wall clock signed timestamps are compared with.
            cache_seconds: how long a connection and its secret are served from memory.
            broker_pause: seconds sends are skipped after one failed.
        """
        self.sessions = sessions
        self.box = box
        self.send = send
        self.tolerance = tolerance
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.broker_pause = broker_pause
        self._cache: dict[str, _Known] = {}
        self._lock = threading.Lock()
        self._sends_paused_until = 0.0

    def receive(
        self,
        provider: str,
        connection_id: str,
        headers: Sequence[tuple[str, str]],
        query: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        """Verify, store and enqueue one delivery; the reply says how it went."""
        try:
            known = self._connection(connection_id)
        except (StoreError, SQLAlchemyError):  # the pool's TimeoutError is no DBAPIError
            return self._unavailable(provider, "store_down", STORE_DOWN)
        except SecretError:
            return self._unavailable(provider, "secret_unreadable", SECRET_UNREADABLE)
        if known is None or known.provider != provider or known.scheme in (None, "none"):
            return self._not_found(provider, connection_id)
        assert known.scheme is not None
        try:
            verified = verify(
                known.scheme,
                secret=known.secret,
                headers=headers,
                query=query,
                body=body,
                now=self.clock(),
                tolerance=self.tolerance,
            )
        except Refused as refused:
            return self._refused(known.provider, connection_id, refused.status, refused.reason,
                                 str(refused))  # fmt: skip
        if verified.answer is not None:
            metrics.count("webhooks", provider=provider, outcome="handshake", reason="none")
            answer = verified.answer
            return Reply(answer.status, answer.body, answer.content_type)
        return self._store_and_send(provider, connection_id, verified)

    # --- the connection -------------------------------------------------------------------

    def _connection(self, connection_id: str) -> _Known | None:
        """The connection (cached), or None when no connection has that id."""
        now = time.monotonic()
        known = self._cache.get(connection_id)
        if known is not None and known.until > now:
            return known
        if not connection_id or len(connection_id) > MAX_ID or not connection_id.isprintable():
            return None  # no id looks so (PostgreSQL would refuse a NUL: a 503, not a 404)
        with self.sessions() as session:
            conn = session.get(Connection, connection_id)
            if conn is None:
                self.forget(connection_id)
                return None
            provider = conn.provider
            secret = connection_secrets(self.box, conn).get("webhook_secret")
        connector = discover_connectors().connectors.get(provider)  # None: no longer installed
        scheme = connector.webhook_scheme if connector is not None else None
        known = _Known(provider, scheme, secret, now + self.cache_seconds)
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[connection_id] = known
        return known

    def forget(self, connection_id: str) -> None:
        """Drop a connection from the cache (it was removed)."""
        with self._lock:
            self._cache.pop(connection_id, None)

    # --- storing and sending --------------------------------------------------------------

    def _store_and_send(self, provider: str, connection_id: str, verified: Verified) -> Reply:
        sending = time.monotonic() >= self._sends_paused_until
        event_id = new_id()
        try:
            with self.sessions() as session:
                stored_id = _insert_once(
                    session,
                    event_id=event_id,
                    provider=provider,
                    connection_id=connection_id,
                    verified=verified,
                    enqueued=sending,
                )
        except _ConnectionGoneError:
            self.forget(connection_id)
            return self._not_found(provider, connection_id)
        except (StoreError, DBAPIError):
            return self._unavailable(provider, "store_down", STORE_DOWN)
        except (StatementError, TypeError, ValueError, RecursionError):
            # The payload could not be written as JSON (nested past what the encoder takes).
            return self._refused(provider, connection_id, 400, "malformed", UNSTORABLE)
        except SQLAlchemyError:  # no connection free in the pool in time (its TimeoutError)
            return self._unavailable(provider, "store_down", STORE_DOWN)
        duplicate = stored_id != event_id
        if duplicate:
            metrics.count("webhooks", provider=provider, outcome="duplicate", reason="none")
        else:
            metrics.count("webhooks", provider=provider, outcome="accepted", reason="none")
            if sending:
                self._send(event_id)
        return Reply.json(202, {"ok": True, "event_id": stored_id, "duplicate": duplicate})

    def _send(self, event_id: str) -> None:
        """Send the event's task; when that fails, mark it unsent for the sweep."""
        try:
            self.send(event_id)
            return
        except Exception as exc:  # kombu's and redis' errors alike: nothing was sent
            self._sends_paused_until = time.monotonic() + self.broker_pause
            log.warning(
                "webhook event %s is stored; sending its task failed (%s), so the sweep will "
                "send it once the broker answers",
                event_id, type(exc).__name__,
            )  # fmt: skip
        try:
            with self.sessions() as session:
                mark_unsent(session, event_id)
        except Exception as exc:  # the event is stored: whatever fails here, the answer is 202
            # Still marked as sent: the sweep sends it once its stale time has passed.
            log.warning(
                "webhook event %s could not be marked unsent (%s)", event_id, type(exc).__name__
            )

    # --- refusals -------------------------------------------------------------------------

    def _not_found(self, provider: str, connection_id: str) -> Reply:
        shown = provider_label(provider)
        metrics.count("webhooks", provider=shown, outcome="refused", reason="unknown_connection")
        log.warning(
            "webhook refused (404, unknown_connection): provider=%r connection=%r",
            provider[:MAX_ID], connection_id[:MAX_ID],
        )  # fmt: skip
        sentence = NOT_FOUND.format(
            cid=repr(connection_id[:MAX_ID]), provider=repr(provider[:MAX_ID])
        )
        return Reply.detail(404, sentence)

    def _refused(
        self, provider: str, connection_id: str, status: int, reason: str, sentence: str
    ) -> Reply:
        metrics.count("webhooks", provider=provider, outcome="refused", reason=reason)
        log.warning(
            "webhook refused (%d, %s): provider=%s connection=%s: %s",
            status, reason, provider, connection_id, sentence,
        )  # fmt: skip
        return Reply.detail(status, sentence)

    def _unavailable(self, provider: str, reason: str, sentence: str) -> Reply:
        metrics.count(
            "webhooks", provider=provider_label(provider), outcome="unavailable", reason=reason
        )
        log.error("webhook not stored (503, %s): %s", reason, sentence)
        return Reply.detail(503, sentence)


def provider_label(provider: str) -> str:
    """``provider`` when it names an installed connector, else ``unknown`` (labels stay few)."""
    return provider if provider in discover_connectors().connectors else "unknown"


def _insert_ignoring_repeats(dialect: Any) -> Any:
    """``INSERT ... ON CONFLICT (connection_id, delivery_id) DO NOTHING RETURNING id``, built
    once: per request only its parameters change, and the compiled form is cached."""
    table = WebhookEvent.__table__
    return (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=["connection_id", "delivery_id"])
        .returning(table.c.id)
    )


#: The fleet's two stores (settings accept no other).
_INSERTS = {
    "postgresql": _insert_ignoring_repeats(postgresql),
    "sqlite": _insert_ignoring_repeats(sqlite),
}
_EARLIER = select(WebhookEvent.__table__.c.id).where(
    WebhookEvent.__table__.c.connection_id == bindparam("connection_id"),
    WebhookEvent.__table__.c.delivery_id == bindparam("delivery_id"),
)


def _insert_once(
    session: Session,
    *,
    event_id: str,
    provider: str,
    connection_id: str,
    verified: Verified,
    enqueued: bool,
) -> str:
    """Insert the event unless its delivery id is stored for the connection; returns the id of
    the stored event (``event_id`` when inserted, the earlier event's when a repeat).

    Core statements on the session's connection: the ORM's unit of work would cost more than
    the rest of the request.
    """
    now = utcnow()
    values = {
        "id": event_id,
        "provider": provider,
        "connection_id": connection_id,
        "delivery_id": verified.delivery_id,
        "event_type": verified.event_type,
        "payload": verified.payload,
        "status": "received",
        "attempts": 0,
        "received_at": now,
        "enqueued_at": now if enqueued else None,
        "error": None,
        "processed_at": None,
        "result": None,
    }
    connection = session.connection()
    insert = _INSERTS[connection.dialect.name]
    for _ in range(2):
        try:
            inserted = connection.execute(insert, values).scalar()
        except IntegrityError as exc:
            if _is_foreign_key(exc):
                raise _ConnectionGoneError from None
            raise
        if inserted is not None:
            return str(inserted)
        earlier = connection.execute(
            _EARLIER, {"connection_id": connection_id, "delivery_id": verified.delivery_id}
        ).scalar()
        if earlier is not None:
            return str(earlier)
        # The earlier event was deleted in between (retention): store this one after all.
    raise StoreError("a webhook event was neither stored nor found; try again.")


def _is_foreign_key(exc: IntegrityError) -> bool:
    """Whether the store refused a row because its connection is gone."""
    text = str(exc.orig).lower()
    return "foreign key" in text
