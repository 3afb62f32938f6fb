"""OAuth 2.0 tokens in the store: encrypted, versioned, and fenced against stale writers.

Every write of a token row bumps its ``version``; a refresher states the version it read, so a
holder whose lock expired while it was still running cannot overwrite a newer token
(``UPDATE ... WHERE version = :seen``). The refresh journal (``refresh_pending_*``) is written
and committed before a refresh request leaves and cleared in the same statement that stores the
answer; :mod:`tasks.tokens` drives the protocol, this module holds its statements.

Each function works in the caller's session; the caller commits (the protocol needs each step
committed before the next one starts, so it opens one short session per step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from spark_integrations.store.crypto import SecretBox
from spark_integrations.store.models import Connection, OAuthToken
from spark_integrations.store.types import utcnow

__all__ = [
    "StoredToken",
    "abandon_refresh",
    "begin_refresh",
    "finish_refresh",
    "mark_needs_reauth",
    "read_token",
    "renewable_tokens",
    "save_connected_token",
    "save_issued_token",
]


#: Longest token lifetime believed (ten years): a provider's absurd ``expires_in`` is capped
#: rather than overflowing a timestamp after the answer arrived.
MAX_LIFETIME = 10 * 365 * 86_400.0


@dataclass(frozen=True)
class StoredToken:
    """A connection's token as read from the store, decrypted (secrets kept out of the repr)."""

    connection_id: str
    connection_status: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    token_type: str
    expires_at: datetime | None
    obtained_at: datetime
    scopes: tuple[str, ...]
    version: int
    grant_type: str
    pending_since: datetime | None
    pending_by: str | None

    @property
    def lifetime(self) -> float | None:
        """Seconds the token was issued for, when the provider said."""
        if self.expires_at is None:
            return None
        return max(0.0, (self.expires_at - self.obtained_at).total_seconds())

    def remaining(self, now: datetime | None = None) -> float | None:
        """Seconds until the token expires (negative once expired); None when it does not."""
        if self.expires_at is None:
            return None
        return (self.expires_at - (now or utcnow())).total_seconds()


def _scopes(answer: Mapping[str, Any], keep: Sequence[str] = ()) -> list[str]:
    """The granted scopes; an answer without ``scope`` keeps the earlier ones (RFC 6749 §5.1:
    the field may be left out when the scopes are unchanged)."""
    scope = answer.get("scope")
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list):
        return [str(s) for s in scope]
    return list(keep)


def _lifetime(answer: Mapping[str, Any]) -> float | None:
    value = answer.get("expires_in")
    try:
        seconds = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    if isinstance(value, bool) or seconds is None or not seconds > 0 or seconds == float("inf"):
        return None
    return min(seconds, MAX_LIFETIME)


def _token_values(
    box: SecretBox,
    answer: Mapping[str, Any],
    *,
    requested_at: datetime,
    keep_refresh: bytes | None = None,
    keep_scopes: Sequence[str] = (),
) -> dict[str, Any]:
    """Column values of a token answer; expiry counted from when the request left."""
    lifetime = _lifetime(answer)
    refresh = answer.get("refresh_token")
    token_type = answer.get("token_type")
    return {
        "access_token": box.encrypt(str(answer["access_token"])),
        # RFC 6749 §6: without a new refresh token in the answer, the old one stays valid.
        "refresh_token": box.encrypt(refresh)
        if isinstance(refresh, str) and refresh
        else keep_refresh,
        "token_type": token_type if isinstance(token_type, str) and token_type else "Bearer",
        "expires_at": None if lifetime is None else requested_at + timedelta(seconds=lifetime),
        "scopes": _scopes(answer, keep_scopes),
        "obtained_at": requested_at,
        "refresh_pending_since": None,
        "refresh_pending_by": None,
        "updated_at": utcnow(),
    }


def read_token(session: Session, box: SecretBox, connection_id: str) -> StoredToken | None:
    """The connection's token, or None when it holds none."""
    row = session.execute(
        select(OAuthToken, Connection.status)
        .join(Connection, Connection.id == OAuthToken.connection_id)
        .where(OAuthToken.connection_id == connection_id)
    ).first()
    if row is None:
        return None
    token, status = row
    return StoredToken(
        connection_id=token.connection_id,
        connection_status=status,
        access_token=box.decrypt(token.access_token),
        refresh_token=None if token.refresh_token is None else box.decrypt(token.refresh_token),
        token_type=token.token_type,
        expires_at=token.expires_at,
        obtained_at=token.obtained_at,
        scopes=tuple(token.scopes or ()),
        version=token.version,
        grant_type=token.grant_type,
        pending_since=token.refresh_pending_since,
        pending_by=token.refresh_pending_by,
    )


def save_connected_token(
    session: Session,
    box: SecretBox,
    connection_id: str,
    answer: Mapping[str, Any],
    *,
    requested_at: datetime,
    grant_type: str = "authorization_code",
) -> int:
    """Store the tokens of a completed connect flow, replacing any others; the connection
    becomes ``active``. Returns the token's new version."""
    values = _token_values(box, answer, requested_at=requested_at)
    token = session.get(OAuthToken, connection_id, with_for_update=True)
    if token is None:
        token = OAuthToken(connection_id=connection_id, version=1, grant_type=grant_type, **values)
        session.add(token)
    else:
        for key, value in values.items():
            setattr(token, key, value)
        token.grant_type = grant_type
        token.version = token.version + 1
    session.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(status="active", status_reason=None, updated_at=utcnow())
    )
    session.flush()
    return token.version


def save_issued_token(
    session: Session,
    box: SecretBox,
    connection_id: str,
    answer: Mapping[str, Any],
    *,
    requested_at: datetime,
) -> int | None:
    """Store the first client-credentials token of a connection; None when another process
    stored one first (the caller reads that one)."""
    if session.get(OAuthToken, connection_id) is not None:
        return None
    values = _token_values(box, answer, requested_at=requested_at)
    session.add(
        OAuthToken(
            connection_id=connection_id, version=1, grant_type="client_credentials", **values
        )
    )
    session.flush()
    return 1


def begin_refresh(
    session: Session,
    connection_id: str,
    *,
    version: int,
    holder: str,
    now: datetime,
    takeover: bool = False,
) -> bool:
    """Write the refresh journal, fenced on ``version`` and on no journal being there already;
    False when the token changed or another holder's journal is present.

    ``takeover`` replaces another holder's journal: only for grants that are safe to send
    again (client credentials), never for a rotating refresh token.
    """
    fence = [OAuthToken.connection_id == connection_id, OAuthToken.version == version]
    if not takeover:
        fence.append(OAuthToken.refresh_pending_by.is_(None))
    result = session.execute(
        update(OAuthToken)
        .where(*fence)
        .values(refresh_pending_since=now, refresh_pending_by=holder)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_refresh(
    session: Session,
    box: SecretBox,
    connection_id: str,
    answer: Mapping[str, Any],
    *,
    version: int,
    holder: str,
    requested_at: datetime,
    keep_refresh: bytes | None,
    keep_scopes: Sequence[str] = (),
) -> int | None:
    """Store a refresh's answer and clear the journal, fenced on ``version`` and the journal's
    holder; returns the new version, or None when a newer writer got there first."""
    values = _token_values(
        box,
        answer,
        requested_at=requested_at,
        keep_refresh=keep_refresh,
        keep_scopes=keep_scopes,
    )
    result = session.execute(
        update(OAuthToken)
        .where(
            OAuthToken.connection_id == connection_id,
            OAuthToken.version == version,
            OAuthToken.refresh_pending_by == holder,
        )
        .values(version=OAuthToken.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return version + 1 if result.rowcount else None  # type: ignore[attr-defined]


def abandon_refresh(session: Session, connection_id: str, *, version: int, holder: str) -> None:
    """Clear this holder's journal: its request certainly did not rotate the token."""
    session.execute(
        update(OAuthToken)
        .where(
            OAuthToken.connection_id == connection_id,
            OAuthToken.version == version,
            OAuthToken.refresh_pending_by == holder,
        )
        .values(refresh_pending_since=None, refresh_pending_by=None)
        .execution_options(synchronize_session=False)
    )


def mark_needs_reauth(
    session: Session, connection_id: str, reason: str, *, version: int | None = None
) -> bool:
    """Turn the connection ``needs_reauth`` with its reason; its token is left for the record.

    With ``version``, only while the token is still that version: a refresher failing late
    cannot undo a connect flow that stored new tokens meanwhile. True when the status changed.
    """
    stmt = update(Connection).where(Connection.id == connection_id)
    if version is not None:
        stmt = stmt.where(
            select(OAuthToken.connection_id)
            .where(OAuthToken.connection_id == connection_id, OAuthToken.version == version)
            .exists()
        )
    result = session.execute(
        stmt.values(
            status="needs_reauth", status_reason=reason, updated_at=utcnow()
        ).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renewable_tokens(session: Session) -> list[str]:
    """Connections the proactive refresh looks at: active, with a token that can be renewed
    (a refresh token, or a client-credentials grant), soonest expiry first."""
    rows = session.scalars(
        select(OAuthToken.connection_id)
        .join(Connection, Connection.id == OAuthToken.connection_id)
        .where(
            Connection.status == "active",
            (OAuthToken.refresh_token.is_not(None))
            | (OAuthToken.grant_type == "client_credentials"),
        )
        .order_by(OAuthToken.expires_at)
    ).all()
    return list(rows)
