"""The connect flow through the gateway's HTTP endpoints, with the provider mocked by responses."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import responses
from sqlalchemy import func, select
from starlette.testclient import TestClient

from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.gateway import ConnectFlows, StartedFlow
from spark_integrations.gateway.links import state_hash
from spark_integrations.settings import Settings
from spark_integrations.store import Connection, OAuthToken, SecretBox, session_scope
from tests.unit.gateway.conftest import (
    PROVIDER,
    PUBLIC_URL,
    TOKEN_URL,
    Clock,
    flip_last,
    flow_row,
    new_connection,
)

ACCESS = "at-PLAINTEXT-access-token-5b1e"
REFRESH = "rt-PLAINTEXT-refresh-token-9c2d"
CLIENT_SECRET_WORDS = re.compile("PLAINTEXT")


def token_answer(**extra: object) -> dict[str, object]:
    return {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "items:read",
        **extra,
    }


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def tokens(s: Settings) -> list[OAuthToken]:
    with session_scope(s.database_url) as session:
        return list(session.scalars(select(OAuthToken)))


def connection_status(s: Settings, connection_id: str) -> str:
    with session_scope(s.database_url) as session:
        conn = session.get(Connection, connection_id)
        assert conn is not None
        return conn.status


def authorize(client: TestClient, started: StartedFlow) -> dict[str, str]:
    """Open the link; returns the query of the provider URL the gateway redirected to."""
    answer = client.get(path_of(started.url))
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(PROVIDER + "/oauth/authorize?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def assert_untouched(s: Settings, started: StartedFlow) -> None:
    row = flow_row(s, started.flow_id)
    assert row is not None
    assert (row.status, row.state_hash, row.code_verifier, row.redirect_uri) == (
        "issued",
        None,
        None,
        None,
    )


def test_signed_link_redirects_to_the_provider_with_pkce(
    client: TestClient,
    flows: ConnectFlows,
    connection_id: str,
    gateway_settings: Settings,
    box: SecretBox,
) -> None:
    started = flows.start(connection_id)
    assert started.url.startswith(f"{PUBLIC_URL}/oauth/{connection_id}/authorize?flow=")
    answer = client.get(path_of(started.url))
    assert answer.status_code == 302
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"
    location = answer.headers["location"]
    assert location.startswith(PROVIDER + "/oauth/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "sandbox"
    assert query["redirect_uri"] == PUBLIC_URL + "/oauth/callback"
    assert query["code_challenge_method"] == "S256"
    assert query["scope"] == " ".join(SandboxConnector.oauth_scopes)
    row = flow_row(gateway_settings, started.flow_id)
    assert row is not None and row.status == "authorizing"
    assert row.code_verifier is not None and row.state_expires_at is not None
    # The verifier is stored encrypted; it is what the challenge was made from.
    verifier = box.decrypt(row.code_verifier)
    assert verifier.encode() not in row.code_verifier
    assert 43 <= len(verifier) <= 128


def test_the_challenge_matches_the_stored_verifier(
    client: TestClient,
    flows: ConnectFlows,
    connection_id: str,
    gateway_settings: Settings,
    box: SecretBox,
) -> None:
    started = flows.start(connection_id)
    query = authorize(client, started)
    row = flow_row(gateway_settings, started.flow_id)
    assert row is not None and row.code_verifier is not None
    digest = hashlib.sha256(box.decrypt(row.code_verifier).encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert row.state_hash == state_hash(query["state"])
    assert query["state"] not in (row.state_hash or "")


def test_scopes_and_authorize_params_from_the_config(
    client: TestClient, flows: ConnectFlows, gateway_settings: Settings
) -> None:
    cid = new_connection(
        gateway_settings,
        "scoped",
        scopes=["items:read", "messages:write"],
        authorize_params={"prompt": "consent", "state": "attacker"},
    )
    query = authorize(client, flows.start(cid))
    assert query["scope"] == "items:read messages:write"
    assert query["prompt"] == "consent"
    assert query["state"] != "attacker"  # the fleet's own parameters win
    unscoped = new_connection(gateway_settings, "unscoped", scopes=[])
    assert "scope" not in authorize(client, flows.start(unscoped))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda q: {}, id="unsigned"),
        pytest.param(lambda q: {k: v for k, v in q.items() if k != "sig"}, id="no-sig"),
        pytest.param(lambda q: {**q, "sig": flip_last(q["sig"])}, id="bad-sig"),
        pytest.param(lambda q: {**q, "exp": str(int(q["exp"]) + 3600)}, id="longer-expiry"),
        pytest.param(lambda q: {**q, "flow": flip_last(q["flow"])}, id="other-flow"),
        pytest.param(lambda q: {**q, "exp": "soon"}, id="malformed-exp"),
        pytest.param(lambda q: {**q, "flow": "f" * 500}, id="long-flow"),
    ],
)
def test_unsigned_or_tampered_link_is_refused_and_stores_nothing(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings, mangle
) -> None:
    started = flows.start(connection_id)
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.url).query).items()}
    answer = client.get(f"/oauth/{connection_id}/authorize?{urlencode(mangle(query))}")
    assert 400 <= answer.status_code < 500
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == "no-store"
    assert_untouched(gateway_settings, started)


def test_a_link_for_another_connection_is_refused(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings
) -> None:
    other = new_connection(gateway_settings, "other")
    started = flows.start(connection_id)
    answer = client.get(path_of(started.url).replace(connection_id, other))
    assert answer.status_code == 403
    assert_untouched(gateway_settings, started)
    unknown = client.get(path_of(started.url).replace(connection_id, "no-such-connection"))
    assert unknown.status_code == 403


def test_expired_link_is_refused(
    client: TestClient,
    flows: ConnectFlows,
    connection_id: str,
    gateway_settings: Settings,
    clock: Clock,
) -> None:
    started = flows.start(connection_id)
    clock.now += timedelta(minutes=10, seconds=1)
    answer = client.get(path_of(started.url))
    assert answer.status_code == 410
    assert "expired" in answer.text
    assert_untouched(gateway_settings, started)


def test_a_link_works_once(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings
) -> None:
    started = flows.start(connection_id)
    authorize(client, started)
    first = flow_row(gateway_settings, started.flow_id)
    again = client.get(path_of(started.url))
    assert again.status_code == 409
    second = flow_row(gateway_settings, started.flow_id)
    assert first is not None and second is not None
    assert (second.state_hash, second.code_verifier) == (first.state_hash, first.code_verifier)


def test_a_head_request_leaves_the_link_unused(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings
) -> None:
    """Link previewers send HEAD: the link must still work for the person afterwards."""
    started = flows.start(connection_id)
    assert client.head(path_of(started.url)).status_code == 200
    assert_untouched(gateway_settings, started)
    answer = client.get(path_of(started.url), follow_redirects=False)
    assert answer.status_code == 302


def test_a_link_to_a_removed_connection_is_not_found(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings
) -> None:
    started = flows.start(connection_id)
    with session_scope(gateway_settings.database_url) as session:
        conn = session.get(Connection, connection_id)
        session.delete(conn)
    assert client.get(path_of(started.url)).status_code == 404


def test_start_refuses_unknown_and_unauthorisable_connections(
    flows: ConnectFlows, gateway_settings: Settings, box: SecretBox
) -> None:
    with pytest.raises(NotFoundError):
        flows.start("no-such-connection")
    cid = new_connection(gateway_settings, "no-client", client_id=None)
    with pytest.raises(UsageError, match="client_id"):
        flows.start(cid)


@responses.activate
def test_callback_stores_encrypted_tokens_and_activates_the_connection(
    client: TestClient, flows: ConnectFlows, gateway_settings: Settings
) -> None:
    cid = new_connection(gateway_settings, "<b>Acme</b> & co")
    responses.post(TOKEN_URL, json=token_answer())
    started = flows.start(cid)
    query = authorize(client, started)
    answer = client.get("/oauth/callback?" + urlencode({"code": "c0de", "state": query["state"]}))
    assert answer.status_code == 200, answer.text
    assert "&lt;b&gt;Acme&lt;/b&gt; &amp; co" in answer.text and "<b>Acme" not in answer.text
    assert answer.headers["referrer-policy"] == "no-referrer"
    # The exchange sent the code, the redirect URI and the verifier the challenge was made of.
    sent = parse_qs(str(responses.calls[0].request.body))
    assert sent["code"] == ["c0de"] and sent["grant_type"] == ["authorization_code"]
    assert sent["redirect_uri"] == [PUBLIC_URL + "/oauth/callback"]
    digest = hashlib.sha256(sent["code_verifier"][0].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]
    [token] = tokens(gateway_settings)
    assert token.connection_id == cid
    assert ACCESS.encode() not in token.access_token
    assert token.refresh_token is not None and REFRESH.encode() not in token.refresh_token
    assert SecretBox(gateway_settings.secret_keys).decrypt(token.access_token) == ACCESS
    assert connection_status(gateway_settings, cid) == "active"
    assert flows.status(started.flow_id) == ("succeeded", None)


@responses.activate
def test_forged_state_is_refused_before_anything_happens(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings
) -> None:
    responses.post(TOKEN_URL, json=token_answer())
    started = flows.start(connection_id)
    query = authorize(client, started)
    nonce, _, sig = query["state"].partition(".")
    for forged in (nonce + "." + flip_last(sig), nonce, "", "a.b", query["state"] + "x"):
        answer = client.get("/oauth/callback?" + urlencode({"code": "c", "state": forged}))
        assert answer.status_code == 400, forged
    assert len(responses.calls) == 0
    assert tokens(gateway_settings) == []
    row = flow_row(gateway_settings, started.flow_id)
    assert row is not None and row.status == "authorizing"
    assert row.state_hash == state_hash(query["state"])


@responses.activate
def test_replayed_state_is_refused(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings
) -> None:
    responses.post(TOKEN_URL, json=token_answer())
    query = authorize(client, flows.start(connection_id))
    url = "/oauth/callback?" + urlencode({"code": "c", "state": query["state"]})
    assert client.get(url).status_code == 200
    replay = client.get(url)
    assert replay.status_code == 400
    assert "completed already or has expired" in replay.text
    assert len(responses.calls) == 1
    [token] = tokens(gateway_settings)
    assert token.version == 1


@responses.activate
def test_expired_state_is_refused_and_stores_nothing(
    client: TestClient,
    flows: ConnectFlows,
    connection_id: str,
    gateway_settings: Settings,
    clock: Clock,
) -> None:
    responses.post(TOKEN_URL, json=token_answer())
    started = flows.start(connection_id)
    query = authorize(client, started)
    clock.now += timedelta(minutes=10, seconds=1)
    answer = client.get("/oauth/callback?" + urlencode({"code": "c", "state": query["state"]}))
    assert answer.status_code == 400
    assert len(responses.calls) == 0
    assert tokens(gateway_settings) == []
    assert connection_status(gateway_settings, connection_id) == "needs_auth"
    row = flow_row(gateway_settings, started.flow_id)
    assert row is not None and row.status == "authorizing"


@responses.activate
def test_provider_error_fails_the_flow(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings
) -> None:
    started = flows.start(connection_id)
    query = authorize(client, started)
    params = {
        "error": "access_denied",
        "error_description": "The user said no\x1b[31m",
        "state": query["state"],
    }
    answer = client.get("/oauth/callback?" + urlencode(params))
    assert answer.status_code == 400
    assert "access_denied" in answer.text
    status, error = flows.status(started.flow_id) or ("", "")
    assert status == "failed"
    assert error is not None and "access_denied" in error and "The user said no" in error
    assert "\x1b" not in error
    assert tokens(gateway_settings) == []
    # The state is used up: the same callback again is a replay.
    assert client.get("/oauth/callback?" + urlencode(params)).status_code == 400


def test_an_arbitrary_error_code_is_not_echoed(
    client: TestClient, flows: ConnectFlows, connection_id: str
) -> None:
    started = flows.start(connection_id)
    query = authorize(client, started)
    params = {"error": "<script>alert(1)</script>", "state": query["state"]}
    answer = client.get("/oauth/callback?" + urlencode(params))
    assert answer.status_code == 400
    assert "<script>" not in answer.text and "alert" not in answer.text
    status, error = flows.status(started.flow_id) or ("", "")
    assert status == "failed" and error is not None and "unknown_error" in error


@responses.activate
@pytest.mark.parametrize(
    ("provider_status", "body", "page_status", "words"),
    [
        (400, {"error": "invalid_grant"}, 400, "invalid_grant"),
        (503, {"error": "temporarily_unavailable"}, 502, "503"),
    ],
)
def test_a_refused_exchange_fails_the_flow(
    client: TestClient,
    flows: ConnectFlows,
    connection_id: str,
    gateway_settings: Settings,
    provider_status: int,
    body: dict[str, str],
    page_status: int,
    words: str,
) -> None:
    responses.post(TOKEN_URL, json=body, status=provider_status)
    started = flows.start(connection_id)
    query = authorize(client, started)
    answer = client.get("/oauth/callback?" + urlencode({"code": "c", "state": query["state"]}))
    assert answer.status_code == page_status
    status, error = flows.status(started.flow_id) or ("", "")
    assert status == "failed" and error is not None and words in error
    assert CLIENT_SECRET_WORDS.search(error) is None
    assert tokens(gateway_settings) == []
    assert connection_status(gateway_settings, connection_id) == "needs_auth"


@responses.activate
def test_a_flow_abandoned_by_connect_stores_no_token(
    client: TestClient, flows: ConnectFlows, connection_id: str, gateway_settings: Settings
) -> None:
    responses.post(TOKEN_URL, json=token_answer())
    started = flows.start(connection_id)
    query = authorize(client, started)
    assert flows.abandon(started.flow_id, "connect stopped waiting.")
    answer = client.get("/oauth/callback?" + urlencode({"code": "c", "state": query["state"]}))
    assert answer.status_code == 400
    assert tokens(gateway_settings) == []
    assert not flows.abandon(started.flow_id, "again")


def test_callback_without_state_is_refused(client: TestClient, gateway_settings: Settings) -> None:
    for query in ("", "?code=abc", "?state=", "?error=access_denied"):
        assert client.get("/oauth/callback" + query).status_code == 400
    with session_scope(gateway_settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(OAuthToken)) == 0
