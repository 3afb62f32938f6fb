"""OAuth 2.0: authorization code with PKCE, refresh-token rotation, client credentials."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from spark_integrations.sandbox import SandboxServer
from tests.unit.sandbox.conftest import StartSandbox
from tests.unit.sandbox.helpers import stats

CLIENT = ("sandbox", "sandbox-secret")
REDIRECT = "http://127.0.0.1:9/callback"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize(
    http: requests.Session, url: str, challenge: str | None = None, **extra: str
) -> dict[str, list[str]]:
    """Run ``/oauth/authorize``; the query of the redirect."""
    params = {
        "response_type": "code",
        "client_id": "sandbox",
        "redirect_uri": REDIRECT,
        "state": "st-1",
        "scope": "items:read",
        **({"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}),
        **extra,
    }
    with http.get(f"{url}/oauth/authorize", params=params, allow_redirects=False) as answer:
        assert answer.status_code == 302, answer.text
        location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


def token(
    http: requests.Session, url: str, form: dict[str, str], auth: Any = CLIENT
) -> requests.Response:
    with http.post(f"{url}/oauth/token", data=form, auth=auth) as answer:
        return answer


def exchange(http: requests.Session, url: str, code: str, verifier: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    return token(http, url, form)


def api_status(http: requests.Session, url: str, access: str) -> int:
    headers = {"Authorization": f"Bearer {access}"}
    with http.get(f"{url}/v1/items/item-000001", headers=headers) as answer:
        return answer.status_code


def refresh(http: requests.Session, url: str, refresh_token: str) -> requests.Response:
    return token(http, url, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def test_code_flow_with_pkce(sandbox: SandboxServer, http: requests.Session) -> None:
    verifier = secrets.token_urlsafe(48)
    query = authorize(http, sandbox.url, s256(verifier))
    assert query["state"] == ["st-1"]
    answer = exchange(http, sandbox.url, query["code"][0], verifier)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert isinstance(body["expires_in"], int) and body["scope"] == "items:read"
    assert answer.headers["Cache-Control"] == "no-store"
    assert api_status(http, sandbox.url, body["access_token"]) == 200
    counters = stats(sandbox.url)
    assert counters["authorization_codes"] == 1 and counters["tokens_issued"] == 1


def test_wrong_verifier_is_refused_and_codes_are_single_use(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = authorize(http, sandbox.url, s256(verifier))["code"][0]
    wrong = exchange(http, sandbox.url, code, verifier + "x")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # Any redemption attempt uses the code up.
    assert exchange(http, sandbox.url, code, verifier).json()["error"] == "invalid_grant"

    code = authorize(http, sandbox.url, s256(verifier))["code"][0]
    assert exchange(http, sandbox.url, code, verifier).status_code == 200
    again = exchange(http, sandbox.url, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_missing_verifier_and_redirect_mismatch_are_refused(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = authorize(http, sandbox.url, s256(verifier))["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    assert token(http, sandbox.url, form).json()["error"] == "invalid_grant"
    code = authorize(http, sandbox.url, s256(verifier))["code"][0]
    form = {**form, "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT + "2"}
    assert token(http, sandbox.url, form).json()["error"] == "invalid_grant"


def test_plain_pkce_and_no_pkce(sandbox: SandboxServer, http: requests.Session) -> None:
    code = authorize(
        http, sandbox.url, code_challenge="plain-verifier", code_challenge_method="plain"
    )["code"][0]
    assert exchange(http, sandbox.url, code, "plain-verifier").status_code == 200
    code = authorize(http, sandbox.url)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    assert token(http, sandbox.url, form).status_code == 200


def test_authorize_errors(sandbox: SandboxServer, http: requests.Session) -> None:
    base = {"response_type": "code", "client_id": "sandbox", "redirect_uri": REDIRECT}
    for params in ({**base, "client_id": "other"}, {**base, "redirect_uri": ""}):
        with http.get(f"{sandbox.url}/oauth/authorize", params=params) as answer:
            assert answer.status_code == 400
            assert answer.headers["Content-Type"].startswith("text/html")
    query = authorize(http, sandbox.url, response_type="token")
    assert query["error"] == ["unsupported_response_type"] and query["state"] == ["st-1"]


def test_refresh_rotation_and_reuse_revokes_the_family(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = authorize(http, sandbox.url, s256(verifier))["code"][0]
    first = exchange(http, sandbox.url, code, verifier).json()
    second_answer = refresh(http, sandbox.url, first["refresh_token"])
    assert second_answer.status_code == 200
    second = second_answer.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert api_status(http, sandbox.url, second["access_token"]) == 200
    # An unrelated family is untouched by what follows.
    other_code = authorize(http, sandbox.url, s256(verifier))["code"][0]
    other = exchange(http, sandbox.url, other_code, verifier).json()

    reuse = refresh(http, sandbox.url, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # The reuse revoked the whole family: the newer access and refresh tokens too.
    assert api_status(http, sandbox.url, second["access_token"]) == 401
    assert api_status(http, sandbox.url, first["access_token"]) == 401
    with http.get(
        f"{sandbox.url}/v1/items/item-000001",
        headers={"Authorization": f"Bearer {second['access_token']}"},
    ) as answer:
        assert "revoked" in answer.json()["error_description"]
    assert refresh(http, sandbox.url, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert api_status(http, sandbox.url, other["access_token"]) == 200
    assert refresh(http, sandbox.url, other["refresh_token"]).status_code == 200

    counters = stats(sandbox.url)
    assert counters["token_refreshes"] == 2
    assert counters["invalid_grants"] == 2


def test_unknown_refresh_token_is_invalid_grant(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    answer = refresh(http, sandbox.url, "never-issued")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert stats(sandbox.url)["invalid_grants"] == 1


def test_client_credentials_in_body_or_basic(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    body_form = {
        "grant_type": "client_credentials",
        "client_id": "sandbox",
        "client_secret": "sandbox-secret",
    }
    for answer in (
        token(http, sandbox.url, body_form, auth=None),
        token(http, sandbox.url, {"grant_type": "client_credentials"}),
    ):
        assert answer.status_code == 200
        body = answer.json()
        assert "refresh_token" not in body and body["token_type"] == "Bearer"
        assert api_status(http, sandbox.url, body["access_token"]) == 200
    assert stats(sandbox.url)["client_credentials_grants"] == 2


@pytest.mark.parametrize(
    ("form", "auth"),
    [
        ({"grant_type": "client_credentials"}, ("sandbox", "wrong")),
        ({"grant_type": "client_credentials"}, ("someone", "sandbox-secret")),
        ({"grant_type": "client_credentials"}, None),
        ({"grant_type": "client_credentials", "client_id": "sandbox", "client_secret": "x"}, None),
    ],
)
def test_bad_client_is_401_invalid_client(
    sandbox: SandboxServer, http: requests.Session, form: dict[str, str], auth: Any
) -> None:
    answer = token(http, sandbox.url, form, auth=auth)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_unsupported_grant(sandbox: SandboxServer, http: requests.Session) -> None:
    answer = token(http, sandbox.url, {"grant_type": "password"})
    assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"


def test_fractional_ttl_is_a_float(start_sandbox: StartSandbox, http: requests.Session) -> None:
    srv = start_sandbox(token_ttl=1.5)
    body = token(http, srv.url, {"grant_type": "client_credentials"}).json()
    assert body["expires_in"] == 1.5


def test_oauth_is_never_rate_limited_or_faulted(
    start_sandbox: StartSandbox, http: requests.Session
) -> None:
    srv = start_sandbox(rate_limit=1, burst=1, fault_rate=1.0)
    for _ in range(5):
        assert token(http, srv.url, {"grant_type": "client_credentials"}).status_code == 200
    assert stats(srv.url)["faults_injected"] == 0
