"""The GitHub connector's one Python hook: GitHub App installation tokens (jwt_app).

The token endpoint is served by ``responses``; the clock is the test's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from spark_integrations.connectors.auth import JWTAuthenticator
from spark_integrations.connectors.providers.github import GitHub
from spark_integrations.connectors.providers.github_app import InstallationToken
from spark_integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    FatalError,
    RateLimitedError,
    RetriableError,
)

URL = "https://api.github.com/app/installations/1296269/access_tokens"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def answer(token: str, expires_at: str = "2033-05-18T03:33:20Z") -> dict[str, Any]:
    return {"token": token, "expires_at": expires_at, "permissions": {"issues": "write"}}


def installation(clock: Clock) -> InstallationToken:
    return InstallationToken(
        JWTAuthenticator(PEM, issuer="369", clock=clock),
        URL,
        session=requests.Session(),
        timeout=5,
        connector="github",
        clock=clock,
    )


def test_the_token_is_obtained_with_the_apps_jwt_and_kept_until_near_expiry(
    mocked: responses.RequestsMock,
) -> None:
    clock = Clock()  # 2033-05-18T03:33:20Z: the first answer expires an hour later
    mocked.post(URL, json=answer("ghs_one", "2033-05-18T04:33:20Z"), status=201)
    mocked.post(URL, json=answer("ghs_two", "2033-05-18T05:33:20Z"), status=201)
    auth = installation(clock)
    assert auth.token() == "ghs_one"
    sent = mocked.calls[0].request.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(
        sent,
        KEY.public_key(),
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == "369" and claims["exp"] - claims["iat"] <= 600
    clock.now += 3600 - 61  # more than a minute before expiry: kept
    assert auth.token() == "ghs_one"
    clock.now += 2  # within the last minute: renewed
    assert auth.token() == "ghs_two"
    assert auth.obtained == 2 and len(mocked.calls) == 2


def test_invalidate_obtains_a_new_token(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=answer("ghs_one"), status=201)
    mocked.post(URL, json=answer("ghs_two"), status=201)
    auth = installation(Clock())
    assert auth.token() == "ghs_one"
    auth.invalidate()
    assert auth.token() == "ghs_two"
    assert "ghs_" not in repr(auth) and "PRIVATE" not in repr(auth)


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (401, {}, AuthenticationError),
        (429, {"Retry-After": "7"}, RateLimitedError),
        (404, {}, FatalError),
    ],
)
def test_a_refused_exchange_says_why(
    mocked: responses.RequestsMock, status: int, headers: dict[str, str], error: type
) -> None:
    mocked.post(URL, json={"message": "refused"}, status=status, headers=headers)
    with pytest.raises(error):
        installation(Clock()).token()


def test_a_failed_exchange_is_retriable_and_never_maybe_applied(
    mocked: responses.RequestsMock,
) -> None:
    """The API request has not left when the token endpoint fails: resending it is safe."""
    mocked.post(URL, json={"message": "Server Error"}, status=502)
    with pytest.raises(RetriableError) as caught:
        installation(Clock()).token()
    assert caught.value.maybe_applied is False


def test_the_connector_signs_with_the_key_and_sends_the_installation_token(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(
        "https://ghe.example.com/api/v3/app/installations/1296269/access_tokens",
        json=answer("ghs_three"),
        status=201,
    )
    issue = "https://ghe.example.com/api/v3/repos/octocat/Hello-World/issues/1"
    mocked.get(issue, json={"number": 1})
    config = {
        "base_url": "https://ghe.example.com/api/v3",
        "app_id": "369",
        "installation_id": "1296269",
    }
    client = GitHub(config, {"private_key": PEM})
    action = client.get_action("get_issue")
    params = action.validate({"owner": "octocat", "repo": "Hello-World", "issue_number": 1})
    assert client.perform_action(action, params).value == {"number": 1}
    assert mocked.calls[1].request.headers["Authorization"] == "Bearer ghs_three"
    assert GitHub.initial_status({"private_key": PEM}) == "active"


def test_a_private_key_without_its_config_is_one_sentence() -> None:
    client = GitHub({}, {"private_key": PEM})
    with pytest.raises(ConfigurationError, match="lacks app_id or installation_id"):
        client.auth()
