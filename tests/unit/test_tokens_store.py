"""Token rows in the store: encryption, the fencing version, the refresh journal (store/tokens.py),
and the OAuth settings a connector derives from a connection (connectors/base.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from spark_integrations.connectors.oauth import renew_margin
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.errors import UsageError
from spark_integrations.store import Connection, OAuthToken, SecretBox, session_scope
from spark_integrations.store.connections import add_connection
from spark_integrations.store.tokens import (
    abandon_refresh,
    begin_refresh,
    finish_refresh,
    mark_needs_reauth,
    read_token,
    save_connected_token,
    save_issued_token,
)
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.tokens import StoredTokens

ANSWER = {
    "access_token": "at-1",
    "refresh_token": "rt-1",
    "expires_in": 100,
    "token_type": "Bearer",
    "scope": "a b",
}


@pytest.fixture
def box(fernet_key: str) -> SecretBox:
    return SecretBox([fernet_key])


@pytest.fixture
def cid(store_url: str, box: SecretBox) -> str:
    with session_scope(store_url) as session:
        conn = add_connection(
            session,
            box,
            provider="sandbox",
            name="t",
            config={"client_id": "sandbox"},
            secrets={"client_secret": "cs"},
            status="needs_auth",
        )
        return conn.id


def test_connected_token_is_encrypted_and_activates_the_connection(
    store_url: str, box: SecretBox, cid: str
) -> None:
    at = utcnow()
    with session_scope(store_url) as session:
        assert save_connected_token(session, box, cid, ANSWER, requested_at=at) == 1
    with session_scope(store_url) as session:
        row = session.get(OAuthToken, cid)
        assert row is not None
        assert b"at-1" not in bytes(row.access_token) and b"rt-1" not in bytes(row.refresh_token)
        conn = session.get(Connection, cid)
        assert conn is not None and conn.status == "active"
        token = read_token(session, box, cid)
    assert token is not None
    assert (token.access_token, token.refresh_token, token.scopes) == ("at-1", "rt-1", ("a", "b"))
    assert token.lifetime == pytest.approx(100)
    assert token.version == 1 and token.grant_type == "authorization_code"
    assert "at-1" not in repr(token) and "rt-1" not in repr(token)
    # Connecting again replaces the tokens and bumps the version.
    with session_scope(store_url) as session:
        assert (
            save_connected_token(
                session, box, cid, {**ANSWER, "access_token": "at-2"}, requested_at=at
            )
            == 2
        )


def test_refresh_is_fenced_on_version_and_holder(store_url: str, box: SecretBox, cid: str) -> None:
    at = utcnow()
    with session_scope(store_url) as session:
        save_connected_token(session, box, cid, ANSWER, requested_at=at)
    with session_scope(store_url) as session:
        assert not begin_refresh(session, cid, version=7, holder="h1", now=at)
        assert begin_refresh(session, cid, version=1, holder="h1", now=at)
    with session_scope(store_url) as session:
        token = read_token(session, box, cid)
        assert token is not None and token.pending_by == "h1"
        # Another holder (whose lock expired) cannot store its answer.
        assert (
            finish_refresh(
                session,
                box,
                cid,
                {"access_token": "x"},
                version=1,
                holder="h2",
                requested_at=at,
                keep_refresh=None,
            )
            is None
        )
        # An answer without a refresh token keeps the old one (RFC 6749 §6).
        assert (
            finish_refresh(
                session,
                box,
                cid,
                {"access_token": "at-2", "expires_in": 10},
                version=1,
                holder="h1",
                requested_at=at,
                keep_refresh=box.encrypt("rt-1"),
            )
            == 2
        )
    with session_scope(store_url) as session:
        token = read_token(session, box, cid)
        assert token is not None
        assert (token.access_token, token.refresh_token, token.version) == ("at-2", "rt-1", 2)
        assert token.pending_by is None and token.pending_since is None
        # A stale holder of version 1 cannot overwrite version 2.
        assert (
            finish_refresh(
                session,
                box,
                cid,
                {"access_token": "old"},
                version=1,
                holder="h1",
                requested_at=at,
                keep_refresh=None,
            )
            is None
        )


def test_a_stale_holder_cannot_journal_over_a_live_one(
    store_url: str, box: SecretBox, cid: str
) -> None:
    """Holder A read version 1 and stalled past its lock; B journaled version 1 meanwhile: A's
    late journal is refused, so only one of them sends the refresh token."""
    at = utcnow()
    with session_scope(store_url) as session:
        save_connected_token(session, box, cid, ANSWER, requested_at=at)
    with session_scope(store_url) as session:
        assert begin_refresh(session, cid, version=1, holder="B", now=at)
    with session_scope(store_url) as session:
        assert not begin_refresh(session, cid, version=1, holder="A", now=at)
        # A grant safe to send again (client credentials) may take a dead holder's journal over.
        assert begin_refresh(session, cid, version=1, holder="C", now=at, takeover=True)
    with session_scope(store_url) as session:
        assert read_token(session, box, cid).pending_by == "C"  # type: ignore[union-attr]


def test_needs_reauth_is_fenced_on_the_token_version(
    store_url: str, box: SecretBox, cid: str
) -> None:
    """A refresher failing late cannot undo a connect flow that stored new tokens meanwhile."""
    at = utcnow()
    with session_scope(store_url) as session:
        save_connected_token(session, box, cid, ANSWER, requested_at=at)
        save_connected_token(session, box, cid, ANSWER, requested_at=at)  # reconnected: v2
    with session_scope(store_url) as session:
        assert not mark_needs_reauth(session, cid, "late", version=1)
    with session_scope(store_url) as session:
        assert session.get(Connection, cid).status == "active"  # type: ignore[union-attr]
        assert mark_needs_reauth(session, cid, "now", version=2)
    with session_scope(store_url) as session:
        assert session.get(Connection, cid).status == "needs_reauth"  # type: ignore[union-attr]


def test_a_refresh_answer_without_scope_keeps_the_scopes(
    store_url: str, box: SecretBox, cid: str
) -> None:
    at = utcnow()
    with session_scope(store_url) as session:
        save_connected_token(session, box, cid, ANSWER, requested_at=at)
        begin_refresh(session, cid, version=1, holder="h", now=at)
        finish_refresh(
            session,
            box,
            cid,
            {"access_token": "at-2", "expires_in": 1e12},
            version=1,
            holder="h",
            requested_at=at,
            keep_refresh=None,
            keep_scopes=("a", "b"),
        )
    with session_scope(store_url) as session:
        token = read_token(session, box, cid)
    assert token is not None and token.scopes == ("a", "b")
    # An absurd expires_in is capped, not overflowed.
    assert token.lifetime is not None and token.lifetime <= 10 * 366 * 86_400


def test_abandoned_refresh_clears_only_its_own_journal(
    store_url: str, box: SecretBox, cid: str
) -> None:
    at = utcnow()
    with session_scope(store_url) as session:
        save_connected_token(session, box, cid, ANSWER, requested_at=at)
        begin_refresh(session, cid, version=1, holder="h1", now=at)
    with session_scope(store_url) as session:
        abandon_refresh(session, cid, version=1, holder="other")
    with session_scope(store_url) as session:
        assert read_token(session, box, cid).pending_by == "h1"  # type: ignore[union-attr]
        abandon_refresh(session, cid, version=1, holder="h1")
    with session_scope(store_url) as session:
        assert read_token(session, box, cid).pending_by is None  # type: ignore[union-attr]
        mark_needs_reauth(session, cid, "because")
    with session_scope(store_url) as session:
        token = read_token(session, box, cid)
        assert token is not None and token.connection_status == "needs_reauth"


def test_first_client_credentials_token_is_stored_once(
    store_url: str, box: SecretBox, cid: str
) -> None:
    with session_scope(store_url) as session:
        assert save_issued_token(session, box, cid, ANSWER, requested_at=utcnow()) == 1
    with session_scope(store_url) as session:
        assert save_issued_token(session, box, cid, ANSWER, requested_at=utcnow()) is None
        token = read_token(session, box, cid)
        assert token is not None and token.grant_type == "client_credentials"


@pytest.mark.parametrize(
    ("lifetime", "margin"), [(1.0, 0.1), (2.0, 0.2), (300.0, 30.0), (3600.0, 60.0)]
)
def test_renew_margin_is_ten_percent_at_most_sixty_seconds(lifetime: float, margin: float) -> None:
    assert renew_margin(lifetime) == pytest.approx(margin)


def test_proactive_refresh_is_due_within_the_margin_or_when_idle(
    store_url: str, box: SecretBox, cid: str
) -> None:
    now = utcnow()
    with session_scope(store_url) as session:
        save_connected_token(
            session,
            box,
            cid,
            {**ANSWER, "expires_in": 100},
            requested_at=now - timedelta(seconds=50),
        )
        half = read_token(session, box, cid)
        save_connected_token(
            session,
            box,
            cid,
            {**ANSWER, "expires_in": 100},
            requested_at=now - timedelta(seconds=95),
        )
        late = read_token(session, box, cid)
    assert half is not None and late is not None
    assert not StoredTokens.due(half, idle_after=None)
    assert StoredTokens.due(late, idle_after=None)
    assert StoredTokens.due(half, idle_after=40)
    assert not StoredTokens.due(half, idle_after=60)


def test_oauth_client_from_connector_and_config() -> None:
    config = {"base_url": "http://127.0.0.1:9/", "client_id": "app"}
    client = SandboxConnector.oauth_client(config, {"client_secret": "s3cret"})
    assert client.authorize_url == "http://127.0.0.1:9/oauth/authorize"
    assert client.token_url == "http://127.0.0.1:9/oauth/token"
    assert client.scopes == ("items:read", "messages:write")
    assert client.grant_type == "authorization_code"
    assert "s3cret" not in repr(client)
    override = SandboxConnector.oauth_client(
        {
            **config,
            "token_url": "https://id.example.com/token",
            "scopes": ["x"],
            "token_auth_method": "client_secret_post",
            "authorize_params": {"access_type": "offline"},
        },
        {"client_secret": "s"},
    )
    assert override.token_url == "https://id.example.com/token"
    assert override.scopes == ("x",) and override.auth_method == "client_secret_post"
    assert override.authorize_params == {"access_type": "offline"}
    with pytest.raises(UsageError, match="client_id"):
        SandboxConnector.oauth_client({"base_url": "http://127.0.0.1:9"}, {"client_secret": "s"})
    with pytest.raises(UsageError, match="client_secret"):
        SandboxConnector.oauth_client(config, {})
    with pytest.raises(UsageError, match="https"):
        SandboxConnector.oauth_client(
            {**config, "token_url": "http://id.example.com/token"}, {"client_secret": "s"}
        )


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"grant_type": "password"}, "grant_type"),
        ({"token_auth_method": "jwt"}, "token_auth_method"),
        ({"authorize_params": {"a": 1}}, "authorize_params"),
        ({"refresh_idle_after": 0}, "refresh_idle_after"),
    ],
)
def test_oauth_config_is_validated(patch: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        SandboxConnector.validate_config({"base_url": "http://127.0.0.1:9", **patch})


def test_client_credentials_connection_is_active_with_its_secret() -> None:
    cc = {"grant_type": "client_credentials"}
    assert SandboxConnector.initial_status({"client_secret": "s"}, cc) == "active"
    assert SandboxConnector.initial_status({}, cc) == "needs_auth"
    assert SandboxConnector.initial_status({"client_secret": "s"}, {}) == "needs_auth"
    assert SandboxConnector.uses_oauth_tokens({"client_secret": "s"})
    assert not SandboxConnector.uses_oauth_tokens({"api_key": "k"})
