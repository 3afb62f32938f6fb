"""OAuth tokens at work: current tokens for calls, refreshes without races, ``refresh_tokens``.

Providers that rotate refresh tokens accept each one once; two workers refreshing one connection
at the same time burn it, and many providers then revoke the whole family. The protocol here
(../shared/NOTES.md, "Refresh tokens that rotate"):

1. A call takes the token from this process's memory, else from the store. It refreshes only
   when the token has expired (or the provider answered 401 to it): the proactive job renews
   long-lived tokens ahead of expiry, so a burst of calls on a short-lived token is not a burst
   of refreshes.
2. To refresh, a process takes the connection's lock in Redis (a unique value with an expiry:
   redis-py's ``Lock``). The others poll the store, and use the new token as soon as it is there.
3. The holder re-reads the row (someone may have refreshed already), writes the refresh journal
   fenced on the version it read, and commits it; only then does the request leave.
4. The provider's answer is stored first, before anything else can fail, in one statement that
   bumps the version, clears the journal, and is fenced on the version and the journal's holder:
   a holder whose lock expired cannot overwrite a newer token.
5. The one window no client can close: the provider rotated and the process died before step 4.
   The journal is left behind; the next holder finds it and turns the connection
   ``needs_reauth`` with that reason instead of presenting the used refresh token again (which
   would get the family revoked). A refresh whose answer was lost on the way (a read timeout)
   is treated alike: the provider may have rotated.

``invalid_grant`` turns the connection ``needs_reauth`` too; its calls are then dead-lettered
with the reason, without retries, until the connect flow stores new tokens.

Client-credentials connections (config ``grant_type`` ``client_credentials``) go through the
same lock and store; their "refresh" is a new grant, which is always safe to send again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from celery import shared_task
from redis.exceptions import LockError

from connectors import Connector, get_connector
from connectors.auth import renew_margin
from connectors.base import OAuthClient
from constants import REDIS_TOKEN_LOCK_PREFIX, TASK_REFRESH_TOKENS
from errors import (
    AuthenticationError,
    FatalError,
    IntegrationError,
    InvalidGrantError,
    NeedsReauthError,
    RetriableError,
    UsageError,
)
from store import Connection, SecretBox
from store.connections import connection_secrets
from store.tokens import (
    StoredToken,
    abandon_refresh,
    begin_refresh,
    due_tokens,
    finish_refresh,
    mark_needs_reauth,
    read_token,
    save_issued_token,
)
from store.types import utcnow
from tasks.base import FleetTask
from tasks.context import coordination_redis, current_settings, store_session

__all__ = ["TokenSource", "refresh_tokens"]

log = logging.getLogger(__name__)

#: Seconds between looks at the store while another process refreshes.
POLL = 0.05
#: A lock outlives the refresh request's timeouts by this much.
LOCK_MARGIN = 5.0
#: Longest wait for another process's refresh before the call is deferred instead.
MAX_WAIT = 15.0

# This process's latest view of each connection's token.
_tokens: dict[str, StoredToken] = {}
_tokens_pid = 0


def _remember(token: StoredToken) -> StoredToken:
    global _tokens_pid
    pid = os.getpid()
    if pid != _tokens_pid:
        _tokens.clear()
        _tokens_pid = pid
    held = _tokens.get(token.connection_id)
    if held is None or held.version <= token.version:
        _tokens[token.connection_id] = token
    return token


def _recalled(connection_id: str) -> StoredToken | None:
    return _tokens.get(connection_id) if _tokens_pid == os.getpid() else None


def _box() -> SecretBox:
    return SecretBox(current_settings().secret_keys)


def _reconnect_hint(connection_id: str) -> str:
    return f"reconnect it with `spark-integrations connect {connection_id}`"


@dataclass
class TokenSource:
    """The access tokens of one connection for one task: ``source()`` returns one to send.

    Given to the connector as its ``token_source``; ``invalidate()`` (after a 401) makes the
    next ``source()`` refresh unless another process already stored a newer token.
    """

    connection_id: str
    connector: type[Connector]
    config: dict[str, Any]
    secrets: dict[str, str]
    # Hooks for tests that kill a refresher at a chosen point; None in production.
    before_request: Callable[[], None] | None = None
    after_store: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.refused_version: int | None = None
        self.used: StoredToken | None = None
        self.refreshed = 0

    def __repr__(self) -> str:
        return f"TokenSource(connection_id={self.connection_id!r})"

    # -- what calls use ---------------------------------------------------------------------

    def __call__(self) -> str:
        token = self.current()
        self.used = token
        return token.access_token

    def invalidate(self) -> None:
        """The provider refused the token last handed out: the next one must be newer."""
        if self.used is not None:
            self.refused_version = self.used.version

    def current(self) -> StoredToken:
        """A token fit to send: remembered, else read, else refreshed.

        Raises:
            NeedsReauthError: the connection must be connected again (it says why).
            RetriableError: the token endpoint or another refresher is slow; try later.
            FatalError: the token endpoint refuses the request as configured.
        """
        token = _recalled(self.connection_id)
        if token is not None and self.usable(token):
            return token
        token = self.read()
        if token is not None and self.usable(token):
            return token
        return self.refresh(token)

    # -- judging ----------------------------------------------------------------------------

    def usable(self, token: StoredToken) -> bool:
        """Active, not refused by the provider, and not expired."""
        if token.connection_status != "active":
            return False
        if self.refused_version is not None and token.version <= self.refused_version:
            return False
        remaining = token.remaining()
        return remaining is None or remaining > 0

    def client(self) -> OAuthClient:
        try:
            return self.connector.oauth_client(self.config, self.secrets)
        except UsageError as exc:
            raise NeedsReauthError(str(exc), connector=self.connector.name) from None

    def read(self) -> StoredToken | None:
        with store_session() as session:
            token = read_token(session, _box(), self.connection_id)
        return None if token is None else _remember(token)

    def lock_timeout(self) -> float:
        return float(sum(self.connector.token_timeout)) + LOCK_MARGIN

    # -- refreshing -------------------------------------------------------------------------

    def refresh(self, seen: StoredToken | None) -> StoredToken:
        """Refresh under the connection's lock, or wait for the process that holds it."""
        lock = coordination_redis().lock(
            f"{REDIS_TOKEN_LOCK_PREFIX}{self.connection_id}",
            timeout=self.lock_timeout(),
            thread_local=False,
        )
        deadline = time.monotonic() + min(MAX_WAIT, self.lock_timeout() + 1.0)
        while True:
            if seen is not None and seen.connection_status == "needs_reauth":
                raise self.needs_reauth_error(seen)
            if lock.acquire(blocking=False):
                try:
                    return self.refresh_locked()
                finally:
                    try:
                        lock.release()
                    except LockError:
                        log.warning(
                            "the token lock of connection %s expired before its refresh ended",
                            self.connection_id,
                        )
            if time.monotonic() >= deadline:
                raise RetriableError(
                    f"another process has been refreshing the token of connection "
                    f"{self.connection_id} for {MAX_WAIT:.0f} s; trying again later.",
                    connector=self.connector.name,
                )
            time.sleep(POLL)
            seen = self.read()
            if seen is not None and self.usable(seen):
                return seen

    def needs_reauth_error(self, token: StoredToken | None) -> NeedsReauthError:
        with store_session() as session:
            conn = session.get(Connection, self.connection_id)
            reason = conn.status_reason if conn is not None else None
        return NeedsReauthError(
            f"connection {self.connection_id} needs re-authorisation"
            + (f": {reason}" if reason else f"; {_reconnect_hint(self.connection_id)}."),
            connector=self.connector.name,
        )

    def give_up(self, reason: str) -> NeedsReauthError:
        """Turn the connection ``needs_reauth`` for ``reason``; the error to raise."""
        with store_session() as session:
            mark_needs_reauth(session, self.connection_id, reason)
        log.error("connection %s needs re-authorisation: %s", self.connection_id, reason)
        return NeedsReauthError(
            f"connection {self.connection_id} needs re-authorisation: {reason}",
            connector=self.connector.name,
        )

    def refresh_locked(self) -> StoredToken:
        """The lock is held: re-read, journal, request, store (module docstring)."""
        token = self.read()
        if token is not None and self.usable(token):
            return token  # refreshed by someone else meanwhile
        if token is not None and token.connection_status == "needs_reauth":
            raise self.needs_reauth_error(token)
        client = self.client()
        if token is None:
            if client.grant_type == "client_credentials":
                return self.issue_first(client)
            raise NeedsReauthError(
                f"connection {self.connection_id} holds no OAuth token; "
                f"{_reconnect_hint(self.connection_id)}.",
                connector=self.connector.name,
            )
        rotating = token.grant_type == "authorization_code"
        if rotating and token.pending_by is not None:
            raise self.give_up(
                f"a token refresh started at {token.pending_since:%Y-%m-%d %H:%M:%S} UTC was "
                "interrupted after its request may have reached the provider, so the provider "
                "may have rotated the refresh token; it is not presented again (that would get "
                f"the token family revoked); {_reconnect_hint(self.connection_id)}."
            )
        if rotating and not token.refresh_token:
            raise self.give_up(
                f"its access token expired and the provider gave no refresh token; "
                f"{_reconnect_hint(self.connection_id)}."
            )
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        with store_session() as session:
            journaled = begin_refresh(
                session, self.connection_id, version=token.version, holder=holder, now=utcnow()
            )
        if not journaled:
            # A newer token was written since the read: use it.
            newer = self.read()
            if newer is not None and self.usable(newer):
                return newer
            raise RetriableError(
                f"the token of connection {self.connection_id} changed during its refresh.",
                connector=self.connector.name,
            )
        if self.before_request is not None:
            self.before_request()
        endpoint = client.endpoint()
        requested_at = utcnow() - timedelta(milliseconds=1)
        try:
            if rotating:
                assert token.refresh_token is not None
                answer = endpoint.refresh(token.refresh_token)
            else:
                answer = endpoint.client_credentials(client.scopes)
        except (InvalidGrantError, AuthenticationError) as exc:
            raise self.give_up(
                f"{exc} {_reconnect_hint(self.connection_id).capitalize()}."
            ) from None
        except RetriableError as exc:
            if rotating and exc.maybe_applied:
                raise self.give_up(
                    f"{exc} The request may have reached the provider and rotated the refresh "
                    "token, so it is not presented again; "
                    f"{_reconnect_hint(self.connection_id)}."
                ) from None
            self.abandon(token, holder)
            raise
        except (FatalError, IntegrationError):
            self.abandon(token, holder)
            raise
        # The provider's answer is stored before anything else can fail.
        box = _box()
        with store_session() as session:
            version = finish_refresh(
                session,
                box,
                self.connection_id,
                answer,
                version=token.version,
                holder=holder,
                requested_at=requested_at,
                keep_refresh=None
                if token.refresh_token is None
                else box.encrypt(token.refresh_token),
            )
        if self.after_store is not None:
            self.after_store()
        self.refreshed += 1
        fresh = self.read()
        if version is None:
            log.error(
                "connection %s: a refresh's answer could not be stored, a newer write won",
                self.connection_id,
            )
        if fresh is None or not self.usable(fresh):
            raise self.needs_reauth_error(fresh)
        return fresh

    def abandon(self, token: StoredToken, holder: str) -> None:
        with store_session() as session:
            abandon_refresh(session, self.connection_id, version=token.version, holder=holder)

    def issue_first(self, client: OAuthClient) -> StoredToken:
        """The first client-credentials token of a connection."""
        requested_at = utcnow() - timedelta(milliseconds=1)
        try:
            answer = client.endpoint().client_credentials(client.scopes)
        except AuthenticationError as exc:
            raise self.give_up(f"{exc} Fix its client_id or client_secret.") from None
        with store_session() as session:
            save_issued_token(
                session, _box(), self.connection_id, answer, requested_at=requested_at
            )
        self.refreshed += 1
        fresh = self.read()
        if fresh is None:
            raise RetriableError(
                f"the first token of connection {self.connection_id} was not stored.",
                connector=self.connector.name,
            )
        return fresh

    def refresh_if_due(self, *, idle_after: float | None) -> bool:
        """Refresh ahead of expiry (proactive job); True when this call refreshed."""
        token = self.read()
        if token is None or token.connection_status != "active":
            return False
        if not self.due(token, idle_after=idle_after):
            return False
        self.refused_version = token.version  # whatever is stored now is what must be renewed
        before = self.refreshed
        self.refresh(token)
        return self.refreshed > before

    @staticmethod
    def due(token: StoredToken, *, idle_after: float | None) -> bool:
        """Whether the proactive job renews this token now."""
        remaining = token.remaining()
        lifetime = token.lifetime
        if remaining is not None and lifetime is not None and remaining < renew_margin(lifetime):
            return True
        if idle_after is not None:
            idle = (utcnow() - token.obtained_at).total_seconds()
            return idle >= idle_after
        return False


@shared_task(name=TASK_REFRESH_TOKENS, base=FleetTask, bind=True)
def refresh_tokens(self: FleetTask) -> dict[str, int]:
    """Renew tokens that expire within their margin or sat unrefreshed too long (CONTRACT.md).

    The margin is at most 60 s and 10% of the token's lifetime. Each refresh takes the same lock
    as on-demand refreshes, so the job and calls never refresh one connection twice.
    """
    with store_session() as session:
        rows = due_tokens(session)
    box = _box()
    refreshed = failed = 0
    for connection_id, provider, config, _expires, _obtained, renewable in rows:
        if not renewable:
            continue
        try:
            connector = get_connector(provider)
            with store_session() as session:
                conn = session.get(Connection, connection_id)
                if conn is None:
                    continue
                secrets = connection_secrets(box, conn)
            source = TokenSource(connection_id, connector, config, secrets)
            if source.refresh_if_due(idle_after=connector.refresh_idle_limit(config)):
                refreshed += 1
        except (IntegrationError, redis.RedisError) as exc:
            failed += 1
            log.warning("refresh of connection %s failed: %s", connection_id, exc)
    return {"refreshed": refreshed, "failed": failed}
