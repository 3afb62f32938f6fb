"""store.flows: each step of a connect flow moves its row once, guarded by the status it leaves."""

from __future__ import annotations

from datetime import timedelta

from spark_integrations.store import session_scope
from spark_integrations.store.flows import (
    abandon_flow,
    begin_authorization,
    claim_link,
    end_authorization,
    flow_by_state,
    flow_status,
    issue_flow,
    use_state,
)
from spark_integrations.store.types import utcnow


def test_a_flow_goes_issued_authorizing_succeeded_once_each(
    store_url: str, connection_id: str
) -> None:
    now = utcnow()
    with session_scope(store_url) as s:
        flow_id = issue_flow(s, connection_id, now + timedelta(minutes=10))
    with session_scope(store_url) as s:
        assert claim_link(s, flow_id, connection_id, now) is True
        assert claim_link(s, flow_id, connection_id, now) is False  # the link is used up
        begin_authorization(
            s,
            flow_id,
            state_hash="h1",
            state_expires_at=now + timedelta(minutes=10),
            code_verifier=b"encrypted",
            redirect_uri="http://127.0.0.1/oauth/callback",
        )
    with session_scope(store_url) as s:
        flow = flow_by_state(s, "h1")
        assert flow is not None and flow.id == flow_id
        assert use_state(s, flow_id, "h1", now) is True
        assert use_state(s, flow_id, "h1", now) is False  # a replayed callback
        assert flow_by_state(s, "h1") is None
        assert end_authorization(s, flow_id, now) is True
        assert end_authorization(s, flow_id, now, error="late") is False
        assert abandon_flow(s, flow_id, "connect gave up", now) is False
    with session_scope(store_url) as s:
        assert flow_status(s, flow_id) == ("succeeded", None)
        assert flow_status(s, "no-such-flow") is None


def test_expired_links_and_states_are_refused(store_url: str, connection_id: str) -> None:
    now = utcnow()
    with session_scope(store_url) as s:
        expired = issue_flow(s, connection_id, now - timedelta(seconds=1))
        assert claim_link(s, expired, connection_id, now) is False
        assert claim_link(s, expired, "another-connection", now + timedelta(days=-1)) is False
        live = issue_flow(s, connection_id, now + timedelta(minutes=10))
        assert claim_link(s, live, connection_id, now) is True
        begin_authorization(
            s,
            live,
            state_hash="h2",
            state_expires_at=now - timedelta(seconds=1),
            code_verifier=b"x",
            redirect_uri="",
        )
        assert use_state(s, live, "h2", now) is False
        assert abandon_flow(s, live, "connect gave up", now) is True
    with session_scope(store_url) as s:
        assert flow_status(s, live) == ("failed", "connect gave up")
        assert flow_status(s, expired) == ("issued", None)


def test_a_failed_state_ends_the_flow_failed(store_url: str, connection_id: str) -> None:
    now = utcnow()
    with session_scope(store_url) as s:
        flow_id = issue_flow(s, connection_id, now + timedelta(minutes=10))
        claim_link(s, flow_id, connection_id, now)
        begin_authorization(
            s,
            flow_id,
            state_hash="h3",
            state_expires_at=now + timedelta(minutes=10),
            code_verifier=b"x",
            redirect_uri="",
        )
        assert use_state(s, flow_id, "h3", now, failure="the provider refused") is True
    with session_scope(store_url) as s:
        assert flow_status(s, flow_id) == ("failed", "the provider refused")
