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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.exceptions import LockError
from redis.lock import Lock

from spark_integrations import metrics
from spark_integrations.connectors import Connector
from spark_integrations.connectors.oauth import OAuthClient, renew_margin
from spark_integrations.constants import EVENT_CONNECTION_NEEDS_REAUTH, REDIS_TOKEN_LOCK_PREFIX
from spark_integrations.errors import (
    AuthenticationError,
    CoordinationError,
    IntegrationError,
    InvalidGrantError,
    NeedsReauthError,
    RetriableError,
    StoreError,
    UsageError,
)
from spark_integrations.forks import on_fork
from spark_integrations.store import Connection
from spark_integrations.store.tokens import (
    StoredToken,
    abandon_refresh,
    begin_refresh,
    finish_refresh,
    mark_needs_reauth,
    read_token,
    save_issued_token,
)
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.context import coordination_redis, store_session
from spark_integrations.tasks.lookup import secret_box
from spark_integrations.webhooks.outbound import emit

__all__ = ["StoredTokens"]

log = logging.getLogger(__name__)

#: Seconds between tries of the lock while another process refreshes.
POLL = 0.05
#: Seconds between looks at the store meanwhile (a newer token, a needs_reauth).
STORE_POLL = 0.5
#: A lock outlives the refresh request's timeouts by this much.
LOCK_MARGIN = 5.0
#: Longest wait for another process's refresh before the call is deferred instead.
MAX_WAIT = 15.0

# This process's latest view of each connection's token (forgotten after fork).
_tokens: dict[str, StoredToken] = {}
on_fork(_tokens.clear)


def _remember(token: StoredToken) -> StoredToken:
    held = _tokens.get(token.connection_id)
    if held is None or held.version <= token.version:
        _tokens[token.connection_id] = token
    return token


def _recalled(connection_id: str) -> StoredToken | None:
    return _tokens.get(connection_id)


def _reconnect_hint(connection_id: str) -> str:
    return f"reconnect it with `spark-integrations connect {connection_id}`"


@dataclass
class StoredTokens:
    """The access tokens of one connection, kept in the store: ``tokens()`` returns one to send.

    The fleet's :class:`connectors.base.TokenSource`, given to the connector as its
    ``token_source``; ``invalidate()`` (after a 401) makes the next ``tokens()`` refresh unless
    another process already stored a newer token.
    """

    connection_id: str
    connector: type[Connector]
    config: dict[str, Any]
    secrets: dict[str, str]

    def __post_init__(self) -> None:
        self.refused_version: int | None = None
        self.used: StoredToken | None = None
        self.refreshed = 0

    def __repr__(self) -> str:
        return f"StoredTokens(connection_id={self.connection_id!r})"

    # -- what calls use ---------------------------------------------------------------------

    def __call__(self) -> str:
        """The access token for a request about to leave (the authenticator's hook).

        Whatever goes wrong here happens before the request is sent: a retriable failure is
        re-raised as never applied, so the call may be sent again safely.
        """
        try:
            token = self.current()
        except RetriableError as exc:
            raise RetriableError(
                f"no token of connection {self.connection_id} could be had, so the request was "
                f"not sent: {exc}",
                connector=self.connector.name,
                retry_after=exc.retry_after,
            ) from None
        except (StoreError, CoordinationError) as exc:
            raise RetriableError(
                f"the token of connection {self.connection_id} could not be read: {exc}",
                connector=self.connector.name,
            ) from None
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
            token = read_token(session, secret_box(), self.connection_id)
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
        wait = min(MAX_WAIT, self.lock_timeout() + 1.0)
        started = time.monotonic()
        looked = started
        while True:
            if seen is not None and seen.connection_status == "needs_reauth":
                raise self.needs_reauth_error(seen)
            if lock.acquire(blocking=False):
                try:
                    return self.refresh_locked(lock)
                finally:
                    try:
                        lock.release()
                    except LockError:
                        log.warning(
                            "the token lock of connection %s expired before its refresh ended",
                            self.connection_id,
                        )
            now = time.monotonic()
            if now - started >= wait:
                raise RetriableError(
                    f"another process has been refreshing the token of connection "
                    f"{self.connection_id} for {wait:.0f} s; trying again later.",
                    connector=self.connector.name,
                )
            time.sleep(POLL)
            # The lock is tried often (cheap, in Redis); the store is read now and then only.
            if now - looked >= STORE_POLL:
                looked = now
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

    def give_up(self, reason: str, *, version: int | None) -> IntegrationError:
        """Turn the connection ``needs_reauth`` for ``reason``, unless its token moved past
        ``version`` meanwhile (a connect flow stored new tokens); the error to raise."""
        with store_session() as session:
            marked = mark_needs_reauth(session, self.connection_id, reason, version=version)
        if not marked:
            return RetriableError(
                f"the token of connection {self.connection_id} changed during its refresh.",
                connector=self.connector.name,
            )
        log.error("connection %s needs re-authorisation: %s", self.connection_id, reason)
        emit(
            EVENT_CONNECTION_NEEDS_REAUTH,
            {
                "connection_id": self.connection_id,
                "provider": self.connector.name,
                "status": "needs_reauth",
                "reason": reason,
            },
        )
        return NeedsReauthError(
            f"connection {self.connection_id} needs re-authorisation: {reason}",
            connector=self.connector.name,
        )

    def refresh_locked(self, lock: Lock) -> StoredToken:
        """The lock is held: re-read, journal, request, store (module docstring)."""
        token = self.read()
        if token is not None and self.usable(token):
            return token  # refreshed by someone else meanwhile
        if token is not None and token.connection_status == "needs_reauth":
            raise self.needs_reauth_error(token)
        if token is not None and token.connection_status != "active":
            raise UsageError(
                f"connection {self.connection_id} is {token.connection_status}; its token is "
                "not refreshed."
            )
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
        if rotating and token.pending_since is not None:
            self.judge_journal(token)
        if rotating and not token.refresh_token:
            raise self.give_up(
                "its access token expired and the provider gave no refresh token; "
                f"{_reconnect_hint(self.connection_id)}.",
                version=token.version,
            )
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        with store_session() as session:
            journaled = begin_refresh(
                session,
                self.connection_id,
                version=token.version,
                holder=holder,
                now=utcnow(),
                takeover=not rotating,
            )
        if not journaled:
            newer = self.read()
            if newer is not None and self.usable(newer):
                return newer
            raise RetriableError(
                f"the token of connection {self.connection_id} changed during its refresh.",
                connector=self.connector.name,
            )
        # The last moment to find out the lock was lost (the process stalled past its expiry):
        # then another holder may be refreshing, and this request must not leave.
        try:
            lock.reacquire()
        except LockError:
            self.abandon(token, holder)
            raise RetriableError(
                f"the refresh lock of connection {self.connection_id} expired before the "
                "request left; trying again.",
                connector=self.connector.name,
            ) from None
        # A private session: a pooled keep-alive connection the server closed meanwhile would
        # fail after sending, which for a rotating token means "answer lost".
        endpoint = client.endpoint(pooled=False)
        requested_at = utcnow() - timedelta(milliseconds=1)
        try:
            with self.counted():
                if rotating:
                    assert token.refresh_token is not None
                    answer = endpoint.refresh(token.refresh_token)
                else:
                    answer = endpoint.client_credentials(client.scopes)
        except InvalidGrantError as exc:
            raise self.give_up(
                f"{exc} {_reconnect_hint(self.connection_id).capitalize()}.",
                version=token.version,
            ) from None
        except AuthenticationError as exc:
            # The client's own credentials were refused: the refresh token was not used.
            self.abandon(token, holder)
            raise self.give_up(
                f"{exc} Fix its client_id or client_secret with `spark-integrations connections "
                f"update {self.connection_id}`.",
                version=token.version,
            ) from None
        except RetriableError as exc:
            if rotating and exc.maybe_applied:
                raise self.give_up(
                    f"{exc} The request may have reached the provider and rotated the refresh "
                    "token, so it is not presented again; "
                    f"{_reconnect_hint(self.connection_id)}.",
                    version=token.version,
                ) from None
            self.abandon(token, holder)
            raise
        except IntegrationError:
            self.abandon(token, holder)
            raise
        # The provider's answer is stored before anything else can fail.
        box = secret_box()
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
                keep_scopes=token.scopes,
            )
        self.refreshed += 1
        if version is None:
            log.error(
                "connection %s: a refresh's answer could not be stored, a newer write won",
                self.connection_id,
            )
        fresh = self.read()
        if fresh is None or not self.usable(fresh):
            raise RetriableError(
                f"the refreshed token of connection {self.connection_id} is not usable yet.",
                connector=self.connector.name,
            )
        return fresh

    def judge_journal(self, token: StoredToken) -> None:
        """Another holder's journal is there: a refresh in progress, or one that died."""
        assert token.pending_since is not None
        age = (utcnow() - token.pending_since).total_seconds()
        stale_after = self.lock_timeout() + LOCK_MARGIN
        if age < stale_after:
            # Its holder may still be running (a stall past its lock): wait for it.
            raise RetriableError(
                f"a refresh of connection {self.connection_id} started {age:.0f} s ago is "
                "still pending.",
                connector=self.connector.name,
                retry_after=max(1.0, stale_after - age),
            )
        raise self.give_up(
            f"a token refresh started at {token.pending_since:%Y-%m-%d %H:%M:%S} UTC was "
            "interrupted after its request may have reached the provider, so the provider "
            "may have rotated the refresh token; it is not presented again (that would get "
            f"the token family revoked); {_reconnect_hint(self.connection_id)}.",
            version=token.version,
        )

    def abandon(self, token: StoredToken, holder: str) -> None:
        with store_session() as session:
            abandon_refresh(session, self.connection_id, version=token.version, holder=holder)

    @contextmanager
    def counted(self) -> Iterator[None]:
        """Count the token request made inside by its outcome (:mod:`metrics`)."""
        outcome = "failed"
        try:
            yield
            outcome = "succeeded"
        except InvalidGrantError:
            outcome = "invalid_grant"
            raise
        except AuthenticationError:
            outcome = "refused"
            raise
        finally:
            metrics.count("token_refreshes", connector=self.connector.name, outcome=outcome)

    def issue_first(self, client: OAuthClient) -> StoredToken:
        """The first client-credentials token of a connection."""
        requested_at = utcnow() - timedelta(milliseconds=1)
        try:
            with self.counted():
                answer = client.endpoint().client_credentials(client.scopes)
        except AuthenticationError as exc:
            raise self.give_up(
                f"{exc} Fix its client_id or client_secret with `spark-integrations "
                f"connections update {self.connection_id}`.",
                version=None,
            ) from None
        with store_session() as session:
            save_issued_token(
                session, secret_box(), self.connection_id, answer, requested_at=requested_at
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
