"""The links of the connect flow: the signed link ``connect`` prints, the ``state``, and the
redirect to the provider with its PKCE challenge.

``connect`` prints a link to the gateway's authorize endpoint; anyone holding it may start the
flow of that one connection until it expires, so it is signed over the connection id, the flow
id and the expiry. The ``state`` the gateway hands the provider is ``NONCE.SIG``: a callback whose
state was not minted here is refused before the store is touched, and only its SHA-256 hash is
stored, so a leaked database row cannot be replayed as a state.

Both are HMAC-SHA256 under keys derived with HKDF from the fleet's Fernet keys, one ``info`` per
purpose, so a link signature can never pass as a state signature. The newest key signs; every
configured key verifies, so rotating keys does not break a link in flight.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from urllib.parse import quote, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from spark_integrations.connectors.oauth import OAuthClient

__all__ = [
    "MAX_STATE_LENGTH",
    "Signer",
    "authorize_link",
    "derive_key",
    "pkce_pair",
    "provider_authorize_url",
    "state_hash",
]

_LINK_INFO = b"spark-integrations/oauth-link/v1"
_STATE_INFO = b"spark-integrations/oauth-state/v1"
#: A state longer than this was not minted here; it is refused before any work is done on it.
MAX_STATE_LENGTH = 200


def derive_key(fernet_key: str, info: bytes) -> bytes:
    """A 32-byte key for one purpose (``info``), derived with HKDF from a Fernet key."""
    material = base64.urlsafe_b64decode(fernet_key.encode())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _mac(key: bytes, message: bytes) -> str:
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def _link_message(connection_id: str, flow_id: str, expires: int) -> bytes:
    # JSON keeps the three parts apart whatever characters a (hostile) connection id holds.
    return json.dumps([connection_id, flow_id, expires], separators=(",", ":")).encode()


class Signer:
    """Signs and verifies links and states with keys derived from the Fernet keys."""

    def __init__(self, fernet_keys: Sequence[str]) -> None:
        """Derive the signing keys; ``fernet_keys`` are newest first, as in the settings."""
        if not fernet_keys:
            raise ValueError("no secret key to sign with.")
        self._link_keys = tuple(derive_key(k, _LINK_INFO) for k in fernet_keys)
        self._state_keys = tuple(derive_key(k, _STATE_INFO) for k in fernet_keys)

    def __repr__(self) -> str:
        return "Signer(<keys hidden>)"

    def sign_link(self, connection_id: str, flow_id: str, expires: int) -> str:
        """The signature of a link, under the newest key."""
        return _mac(self._link_keys[0], _link_message(connection_id, flow_id, expires))

    def link_ok(self, connection_id: str, flow_id: str, expires: int, signature: str) -> bool:
        """True when ``signature`` was made by :meth:`sign_link` under any configured key."""
        message = _link_message(connection_id, flow_id, expires)
        given = signature.encode("utf-8", "replace")
        # Every key is tried, match or not, so the time taken tells nothing about which matched.
        matches = [hmac.compare_digest(_mac(k, message).encode(), given) for k in self._link_keys]
        return any(matches)

    def new_state(self) -> str:
        """A fresh ``NONCE.SIG`` state, signed under the newest key."""
        nonce = secrets.token_urlsafe(32)
        return f"{nonce}.{_mac(self._state_keys[0], nonce.encode())}"

    def state_ok(self, state: str) -> bool:
        """True when ``state`` was made by :meth:`new_state` under any configured key."""
        if len(state) > MAX_STATE_LENGTH:
            return False
        nonce, dot, signature = state.partition(".")
        if not dot or not nonce or not signature:
            return False
        given = signature.encode("utf-8", "replace")
        message = nonce.encode("utf-8", "replace")
        matches = [hmac.compare_digest(_mac(k, message).encode(), given) for k in self._state_keys]
        return any(matches)


def state_hash(state: str) -> str:
    """What the store keeps of a state: its SHA-256, in hex."""
    return hashlib.sha256(state.encode("utf-8", "replace")).hexdigest()


def authorize_link(
    public_url: str, connection_id: str, flow_id: str, expires: int, signature: str
) -> str:
    """The URL ``connect`` prints: the gateway's authorize endpoint with the signed query."""
    query = urlencode({"flow": flow_id, "exp": expires, "sig": signature})
    return f"{public_url.rstrip('/')}/oauth/{quote(connection_id, safe='')}/authorize?{query}"


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier (64 characters, RFC 7636 §4.1) and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def provider_authorize_url(
    client: OAuthClient, redirect_uri: str, state: str, challenge: str
) -> str:
    """The provider's authorisation URL: the fleet's parameters over the configured extras."""
    params: dict[str, str] = {**client.authorize_params}
    params.update(response_type="code", client_id=client.client_id, redirect_uri=redirect_uri)
    if client.scopes:
        params["scope"] = " ".join(client.scopes)
    params.update(state=state, code_challenge=challenge, code_challenge_method="S256")
    joiner = "&" if urlsplit(client.authorize_url).query else "?"
    return client.authorize_url + joiner + urlencode(params)
