"""JWT-based app auth: a connector-supplied signer (connectors/auth.py JWTAuthenticator)."""

from __future__ import annotations

from typing import Any, ClassVar

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from requests.auth import AuthBase

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.auth import JWTAuthenticator
from spark_integrations.connectors.base import Connector
from spark_integrations.errors import FatalError

BASE = "https://api.example.test"


def _pem() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


PEM, PUBLIC = _pem()


class AppConnector(Connector):
    """A provider whose app authenticates with an RS256 JWT over its app id (GitHub Apps)."""

    name = "app"
    secret_keys: ClassVar[tuple[str, ...]] = ("private_key",)
    config_keys: ClassVar[tuple[str, ...]] = ("app_id",)
    actions: ClassVar[tuple[Action, ...]] = (Action("whoami", "GET", "/app"),)

    def signer(self) -> AuthBase | None:
        key = self.secret("private_key")
        if not key:
            return None
        return JWTAuthenticator(key, issuer=str(self.config["app_id"]), lifetime=540)


@responses.activate
def test_connector_signer_sends_a_verifiable_jwt_and_reuses_it() -> None:
    responses.get(f"{BASE}/app", json={"ok": True})
    client = AppConnector({"base_url": BASE, "app_id": "4242"}, {"private_key": PEM})
    assert client.run_action("whoami", {}) == {"ok": True}
    assert client.run_action("whoami", {}) == {"ok": True}
    headers = [c.request.headers["Authorization"] for c in responses.calls]
    assert headers[0] == headers[1] and headers[0].startswith("Bearer ")
    claims = jwt.decode(headers[0].split(" ", 1)[1], PUBLIC, algorithms=["RS256"])
    assert claims["iss"] == "4242"
    assert 0 < claims["exp"] - claims["iat"] <= 600
    auth = client.auth()
    assert isinstance(auth, JWTAuthenticator) and auth.issued == 1
    assert PEM not in repr(auth) and PEM not in repr(client)


@responses.activate
def test_jwt_is_signed_again_after_invalidate_and_near_expiry() -> None:
    now = [1_000_000.0]
    auth = JWTAuthenticator(PEM, issuer="1", lifetime=100, clock=lambda: now[0])
    first = auth.token()
    assert auth.token() == first
    now[0] += 89  # 11 s left, more than the 10 s margin
    assert auth.token() == first
    now[0] += 2  # within the margin
    second = auth.token()
    assert second != first and auth.issued == 2
    auth.invalidate()
    auth.token()
    assert auth.issued == 3  # signed anew (RS256 is deterministic: same second, same token)


def test_a_bad_key_is_one_sentence_without_the_key() -> None:
    auth = JWTAuthenticator("-----BEGIN PRIVATE KEY-----\nnot a key\n", issuer="1")
    with pytest.raises(FatalError) as caught:
        auth.token()
    assert "not a key" not in str(caught.value) and "RS256" in str(caught.value)
    assert caught.value.__cause__ is None


def test_without_its_secret_the_connector_has_no_signer() -> None:
    client = AppConnector({"base_url": BASE, "app_id": "1"}, {})
    assert client.auth() is None
