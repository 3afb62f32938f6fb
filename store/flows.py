"""OAuth connect flows in the store: each step moves one ``oauth_flows`` row on exactly once.

A flow is ``issued`` (a link was printed), ``authorizing`` (the link was opened: a PKCE verifier
and the hash of a ``state`` are kept), then ``succeeded`` or ``failed``. Every transition is one
``UPDATE`` guarded by the status it leaves (and, where it matters, an expiry or the state's
hash), so two requests racing for one step find exactly one winner: the functions return True
for it and False for the others, writing nothing. The gateway (:mod:`gateway.flows`) decides
what to do; the SQL is here.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.orm import Session

from spark_integrations.store.models import OAuthFlow

__all__ = [
    "abandon_flow",
    "begin_authorization",
    "claim_link",
    "end_authorization",
    "flow_by_state",
    "flow_status",
    "get_flow",
    "issue_flow",
    "use_state",
]

#: Statuses of a flow that has not ended.
OPEN = ("issued", "authorizing")


def _update(session: Session, *where: ColumnElement[bool], **values: Any) -> bool:
    """``UPDATE oauth_flows SET ... WHERE ...``; True when it changed a row (its guard held)."""
    stmt = update(OAuthFlow).where(*where).values(**values)
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount) == 1


def issue_flow(session: Session, connection_id: str, link_expires_at: datetime) -> str:
    """A new ``issued`` flow of a connection; returns its id (random, URL-safe)."""
    flow = OAuthFlow(
        id=secrets.token_urlsafe(24),
        connection_id=connection_id,
        status="issued",
        link_expires_at=link_expires_at,
    )
    session.add(flow)
    session.flush()
    return flow.id


def get_flow(session: Session, flow_id: str) -> OAuthFlow | None:
    """The flow with this id, or None."""
    return session.get(OAuthFlow, flow_id)


def flow_status(session: Session, flow_id: str) -> tuple[str, str | None] | None:
    """A flow's status and error, or None when it is gone (its connection was removed)."""
    row = session.execute(
        select(OAuthFlow.status, OAuthFlow.error).where(OAuthFlow.id == flow_id)
    ).first()
    return None if row is None else (row[0], row[1])


def flow_by_state(session: Session, hashed: str) -> OAuthFlow | None:
    """The flow waiting for the callback whose state has this hash, or None."""
    return session.scalar(select(OAuthFlow).where(OAuthFlow.state_hash == hashed))


def abandon_flow(session: Session, flow_id: str, reason: str, now: datetime) -> bool:
    """End an unfinished flow ``failed``; False when it had ended already."""
    return _update(
        session,
        OAuthFlow.id == flow_id,
        OAuthFlow.status.in_(OPEN),
        status="failed",
        error=reason,
        finished_at=now,
    )


def claim_link(session: Session, flow_id: str, connection_id: str, now: datetime) -> bool:
    """``issued`` -> ``authorizing`` for a link still valid; False when it was used or expired."""
    return _update(
        session,
        OAuthFlow.id == flow_id,
        OAuthFlow.connection_id == connection_id,
        OAuthFlow.status == "issued",
        OAuthFlow.link_expires_at > now,
        status="authorizing",
    )


def begin_authorization(
    session: Session,
    flow_id: str,
    *,
    state_hash: str,
    state_expires_at: datetime,
    code_verifier: bytes,
    redirect_uri: str,
) -> None:
    """Keep what the callback will need on a flow just claimed (the verifier encrypted)."""
    _update(
        session,
        OAuthFlow.id == flow_id,
        state_hash=state_hash,
        state_expires_at=state_expires_at,
        code_verifier=code_verifier,
        redirect_uri=redirect_uri,
    )


def use_state(
    session: Session, flow_id: str, hashed: str, now: datetime, *, failure: str | None = None
) -> bool:
    """Use a callback's state up (once, while valid): clear its hash, and with ``failure`` end
    the flow ``failed``; False when the state was used already or has expired."""
    values: dict[str, Any] = {"state_hash": None}
    if failure is not None:
        values.update(status="failed", error=failure, finished_at=now)
    return _update(
        session,
        OAuthFlow.id == flow_id,
        OAuthFlow.state_hash == hashed,
        OAuthFlow.status == "authorizing",
        OAuthFlow.state_expires_at > now,
        **values,
    )


def end_authorization(
    session: Session, flow_id: str, now: datetime, *, error: str | None = None
) -> bool:
    """``authorizing`` -> ``succeeded`` (or ``failed`` with ``error``); False when the flow had
    ended meanwhile (``connect`` gave up on it)."""
    values: dict[str, Any] = {"status": "succeeded", "finished_at": now}
    if error is not None:
        values.update(status="failed", error=error)
    return _update(session, OAuthFlow.id == flow_id, OAuthFlow.status == "authorizing", **values)
