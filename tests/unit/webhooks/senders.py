"""What each provider sends: deliveries signed the way its documentation says, written here from
the documentation alone (hmac, base64 and Ed25519, never the code under test), so a test that
passes shows the schemes agree with the providers, not with themselves.

A :class:`Sent` is one delivery: the connection's secret, the headers, the query and the body,
and the delivery id the gateway should store it under. :data:`SIGNED_HEADERS` names, per
scheme, the headers whose change must break the signature (GitHub signs neither its delivery id
nor its event name: those are not in it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

NOW = 1_700_000_000
TOLERANCE = 300
#: A Discord application key for tests that need one but no particular one.
TEST_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@dataclass(frozen=True)
class Sent:
    """One delivery as it reaches the gateway."""

    scheme: str
    secret: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    delivery_id: str
    query: dict[str, str] = field(default_factory=dict)
    #: Discord's private key (its ``secret`` is the public key).
    key: Ed25519PrivateKey | None = None

    def kwargs(self, **changes: Any) -> dict[str, Any]:
        """Keyword arguments of ``verify`` for this delivery, with ``changes``."""
        args: dict[str, Any] = {
            "secret": self.secret,
            "headers": list(self.headers),
            "query": self.query,
            "body": self.body,
            "now": NOW,
            "tolerance": TOLERANCE,
        }
        args.update(changes)
        return args

    def with_headers(self, headers: list[tuple[str, str]]) -> Sent:
        return replace(self, headers=tuple(headers))


def hmac_hex(key: str | bytes, message: bytes) -> str:
    raw = key.encode() if isinstance(key, str) else key
    return hmac.new(raw, message, hashlib.sha256).hexdigest()


def standard_webhooks(secret: str, body: bytes, msg_id: str, ts: int) -> list[tuple[str, str]]:
    """Standard Webhooks: base64 HMAC of ``id.ts.body`` keyed with the whsec_ base64 key."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(mac).decode()
    return [
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(ts)),
        ("webhook-signature", signature),
    ]


def stripe(secret: str, body: bytes, ts: int) -> list[tuple[str, str]]:
    """Stripe: hex HMAC of ``ts.body`` keyed with the whole secret string."""
    return [("stripe-signature", f"t={ts},v1={hmac_hex(secret, f'{ts}.'.encode() + body)}")]


def github(secret: str, body: bytes, delivery: str, event: str) -> list[tuple[str, str]]:
    """GitHub: hex HMAC of the body."""
    return [
        ("x-hub-signature-256", "sha256=" + hmac_hex(secret, body)),
        ("x-github-delivery", delivery),
        ("x-github-event", event),
    ]


def slack(secret: str, body: bytes, ts: int) -> list[tuple[str, str]]:
    """Slack: ``v0=`` hex HMAC of ``v0:ts:body``."""
    signature = "v0=" + hmac_hex(secret, f"v0:{ts}:".encode() + body)
    return [("x-slack-request-timestamp", str(ts)), ("x-slack-signature", signature)]


def discord(key: Ed25519PrivateKey, body: bytes, ts: int) -> list[tuple[str, str]]:
    """Discord: Ed25519 over the timestamp's text followed by the body."""
    signature = key.sign(str(ts).encode() + body).hex()
    return [("x-signature-ed25519", signature), ("x-signature-timestamp", str(ts))]


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes_raw().hex()


def generic(secret: str, body: bytes, ts: int, delivery: str | None) -> list[tuple[str, str]]:
    """The fleet's hmac-sha256: hex HMAC of ``ts.id.body`` (``ts..body`` without an id)."""
    signed = f"{ts}.{delivery or ''}.".encode() + body
    headers = [
        ("x-signature-timestamp", str(ts)),
        ("x-signature-256", "sha256=" + hmac_hex(secret, signed)),
    ]
    if delivery is not None:
        headers.append(("x-delivery-id", delivery))
    return headers


def digest(signed: bytes) -> str:
    return "sha256:" + hashlib.sha256(signed).hexdigest()


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


#: Headers whose change must break the delivery's proof, per scheme.
SIGNED_HEADERS: dict[str, tuple[str, ...]] = {
    "standard-webhooks": ("webhook-id", "webhook-timestamp", "webhook-signature"),
    "stripe": ("stripe-signature",),
    "github-sha256": ("x-hub-signature-256",),
    "slack-v0": ("x-slack-request-timestamp", "x-slack-signature"),
    "discord-ed25519": ("x-signature-ed25519", "x-signature-timestamp"),
    "ms-graph-client-state": (),
    "hmac-sha256": ("x-signature-timestamp", "x-signature-256", "x-delivery-id"),
}
#: The header holding the signed timestamp, per scheme that has one.
TIMESTAMP_HEADER: dict[str, str] = {
    "standard-webhooks": "webhook-timestamp",
    "slack-v0": "x-slack-request-timestamp",
    "discord-ed25519": "x-signature-timestamp",
    "hmac-sha256": "x-signature-timestamp",
}


def make(
    scheme: str, data: Any, delivery: str, *, secret: str, key: Ed25519PrivateKey, ts: int = NOW
) -> Sent:
    """A correctly signed delivery of ``scheme`` carrying ``data``, with id ``delivery``.

    ``secret`` signs the HMAC schemes (a whsec_ key is made of it for Standard Webhooks, and it
    is Graph's clientState); ``key`` signs Discord's.
    """
    if scheme == "standard-webhooks":
        whsec = "whsec_" + base64.b64encode(secret.encode()).decode()
        body = dumps({"type": "item.updated", "data": data})
        return Sent(
            scheme, whsec, tuple(standard_webhooks(whsec, body, delivery, ts)), body, delivery
        )
    if scheme == "stripe":
        body = dumps(
            {
                "id": delivery,
                "object": "event",
                "type": "charge.succeeded",
                "data": {"object": data},
            }
        )
        return Sent(scheme, secret, tuple(stripe(secret, body, ts)), body, delivery)
    if scheme == "github-sha256":
        body = dumps({"action": "opened", "issue": data})
        return Sent(scheme, secret, tuple(github(secret, body, delivery, "issues")), body, delivery)
    if scheme == "slack-v0":
        body = dumps(
            {
                "type": "event_callback",
                "event_id": delivery,
                "event": {"type": "message", "x": data},
            }
        )
        return Sent(scheme, secret, tuple(slack(secret, body, ts)), body, delivery)
    if scheme == "discord-ed25519":
        body = dumps({"type": 2, "id": delivery, "data": {"name": "deploy", "options": data}})
        return Sent(scheme, public_hex(key), tuple(discord(key, body, ts)), body, delivery, key=key)
    if scheme == "ms-graph-client-state":
        item = {
            "clientState": secret,
            "changeType": "created",
            "resource": delivery,
            "resourceData": data,
        }
        body = dumps({"value": [item]})
        return Sent(scheme, secret, (), body, digest(body))
    if scheme == "hmac-sha256":
        body = dumps({"type": "thing.happened", "data": data})
        return Sent(scheme, secret, tuple(generic(secret, body, ts, delivery)), body, delivery)
    raise AssertionError(scheme)


def resign(
    sent: Sent,
    body: bytes,
    *,
    ts: int = NOW,
    secret: str | None = None,
    key: Ed25519PrivateKey | None = None,
) -> list[tuple[str, str]]:
    """Headers signing ``body`` at ``ts`` for ``sent``'s scheme, with its secret or another."""
    scheme, own = sent.scheme, dict(sent.headers)
    secret = sent.secret if secret is None else secret
    if scheme == "standard-webhooks":
        return standard_webhooks(secret, body, own["webhook-id"], ts)
    if scheme == "stripe":
        return stripe(secret, body, ts)
    if scheme == "github-sha256":
        return github(secret, body, own["x-github-delivery"], own["x-github-event"])
    if scheme == "slack-v0":
        return slack(secret, body, ts)
    if scheme == "discord-ed25519":
        signer = key or sent.key
        assert signer is not None
        return discord(signer, body, ts)
    if scheme == "hmac-sha256":
        return generic(secret, body, ts, own.get("x-delivery-id"))
    raise AssertionError(scheme)
