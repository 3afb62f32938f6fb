"""Authentication on the API: static key (three ways), Basic client credentials, bearer tokens."""

from __future__ import annotations

import pytest
import requests

from spark_integrations.sandbox import SandboxServer
from tests.unit.sandbox.conftest import StartSandbox
from tests.unit.sandbox.helpers import API_KEY, stats, wait_for

ITEM = "/v1/items/item-000001"


def client_credentials_token(session: requests.Session, url: str) -> str:
    """An access token of the client-credentials grant (default client)."""
    form = {"grant_type": "client_credentials"}
    with session.post(f"{url}/oauth/token", data=form, auth=("sandbox", "sandbox-secret")) as a:
        assert a.status_code == 200, a.text
        token: str = a.json()["access_token"]
    return token


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"X-API-Key": API_KEY}, {}),
        ({}, {"api_key": API_KEY}),
        ({"Authorization": f"Bearer {API_KEY}"}, {}),
    ],
    ids=["x-api-key", "query", "bearer"],
)
def test_static_key_accepted_three_ways(
    sandbox: SandboxServer, http: requests.Session, headers: dict[str, str], params: dict[str, str]
) -> None:
    with http.get(sandbox.url + ITEM, headers=headers, params=params) as answer:
        assert answer.status_code == 200
        assert answer.json()["id"] == "item-000001"


def test_basic_auth_with_client_credentials(sandbox: SandboxServer, http: requests.Session) -> None:
    with http.get(sandbox.url + ITEM, auth=("sandbox", "sandbox-secret")) as answer:
        assert answer.status_code == 200
    with http.get(sandbox.url + ITEM, auth=("sandbox", "wrong")) as answer:
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"X-API-Key": "nope"}, {}),
        ({}, {"api_key": "nope"}),
        ({"Authorization": "Bearer nope"}, {}),
        ({"Authorization": "Token " + API_KEY}, {}),
    ],
    ids=["none", "bad-header-key", "bad-query-key", "unknown-token", "bad-scheme"],
)
def test_anything_else_is_401_invalid_token(
    sandbox: SandboxServer, http: requests.Session, headers: dict[str, str], params: dict[str, str]
) -> None:
    with http.get(sandbox.url + ITEM, headers=headers, params=params) as answer:
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        body = answer.json()
        assert body["error"] == "invalid_token" and body["error_description"]
    assert stats(sandbox.url)["unauthorized"] == 1


def test_no_key_configured_refuses_keys(
    start_sandbox: StartSandbox, http: requests.Session
) -> None:
    srv = start_sandbox(api_key=None)
    with http.get(srv.url + ITEM, headers={"X-API-Key": API_KEY}) as answer:
        assert answer.status_code == 401


def test_issued_token_works_until_it_expires(
    start_sandbox: StartSandbox, http: requests.Session
) -> None:
    """A token of an hour works; a token of a tenth of a second is refused once it expired (the
    test waits for that, whatever its own speed)."""
    lasting = start_sandbox(token_ttl=3600)
    token = client_credentials_token(http, lasting.url)
    with http.get(lasting.url + ITEM, headers={"Authorization": f"Bearer {token}"}) as answer:
        assert answer.status_code == 200

    short = start_sandbox(token_ttl=0.1)
    bearer = {"Authorization": f"Bearer {client_credentials_token(http, short.url)}"}

    def refused() -> bool:
        with http.get(short.url + ITEM, headers=bearer) as answer:
            return answer.status_code == 401

    wait_for(refused)
    with http.get(short.url + ITEM, headers=bearer) as answer:
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert "expired" in answer.json()["error_description"]


def test_revoke_endpoint_expires_one_token_or_all(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    first, second, third = (client_credentials_token(http, sandbox.url) for _ in range(3))

    def status(token: str) -> int:
        with http.get(sandbox.url + ITEM, headers={"Authorization": f"Bearer {token}"}) as a:
            return a.status_code

    with http.post(f"{sandbox.url}/_sandbox/revoke", json={"access_token": first}) as answer:
        assert answer.json() == {"ok": True, "expired": 1}
    assert (status(first), status(second), status(third)) == (401, 200, 200)
    with http.get(sandbox.url + ITEM, headers={"Authorization": f"Bearer {first}"}) as answer:
        assert "expired" in answer.json()["error_description"]
    with http.post(f"{sandbox.url}/_sandbox/revoke", json={"all": True}) as answer:
        assert answer.json() == {"ok": True, "expired": 2}
    assert (status(second), status(third)) == (401, 401)
    with http.post(f"{sandbox.url}/_sandbox/revoke", json={"what": 1}) as answer:
        assert answer.status_code == 400
