"""The HMAC-SHA256 schemes whose deliveries are plain JSON: Standard Webhooks, Stripe, GitHub,
and the fleet's generic scheme for the sandbox and custom senders.

Each function takes a :class:`~.scheme_base.Delivery` whose secret is set, and returns a
:class:`~.scheme_base.Verified` or raises :class:`~.scheme_base.Refused`. The order is the
same in each: headers present and single, timestamp readable and within tolerance, signature,
then the body. A body is read only once its signature holds, so unsigned garbage is 401 and
signed garbage 400.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from standardwebhooks.webhooks import Webhook

from spark_integrations.webhooks.scheme_base import (
    Delivery,
    Refused,
    Verified,
    digest_id,
    hex_digest,
    label,
    parse_json,
    same,
)

__all__ = ["github_sha256", "hmac_sha256", "standard_webhooks", "stripe"]

#: Most signatures read from one header (a sender rotating secrets sends two or three).
MAX_SIGNATURES = 16


def _no_match() -> Refused:
    return Refused(
        "bad_signature", "No signature of the delivery matches this connection's secret."
    )


def _hmac256(key: bytes, signed: bytes) -> bytes:
    return hmac.new(key, signed, hashlib.sha256).digest()


def _any_hex(expected: bytes, candidates: list[str]) -> bool:
    """Whether one of the hexadecimal ``candidates`` is ``expected`` (every one is compared)."""
    found = False
    for candidate in candidates[:MAX_SIGNATURES]:
        # Every candidate is compared, even after a match: timing says nothing of which matched.
        if same(expected, hex_digest(candidate) or b""):
            found = True
    return found


def _event_type(payload: Any, key: str = "type") -> str | None:
    value = payload.get(key) if isinstance(payload, dict) else None
    return label(value, f"event's {key}") if isinstance(value, str) else None


def standard_webhooks(d: Delivery) -> Verified:
    """Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

    The signature is the ``standardwebhooks`` package's over ``{id}.{timestamp}.{body}`` with the
    ``whsec_`` secret's base64 key; the header lists space-separated ``v1,<base64>`` signatures
    (a sender rotating its secret signs with both) and one match is enough. The tolerance is
    ours, checked here: the package's ``verify`` reads the wall clock with a fixed five minutes.
    """
    msg_id = d.required("webhook-id")
    stamp = d.timestamp("webhook-timestamp")
    signatures = d.required("webhook-signature").split(" ")
    try:
        signer = Webhook(d.secret)
    except Exception:
        raise Refused(
            "no_secret", "This connection's webhook secret is not a whsec_ base64 key."
        ) from None
    try:
        expected = signer.sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), d.body).encode()
    except UnicodeEncodeError:  # an id no sender could have signed
        raise _no_match() from None
    matched = False
    for versioned in signatures[:MAX_SIGNATURES]:
        if same(expected, versioned):
            matched = True
    if not matched:
        raise _no_match()
    payload = parse_json(d.body)
    return Verified(label(msg_id, "webhook-id"), _event_type(payload), payload)


def stripe(d: Delivery) -> Verified:
    """Stripe: ``Stripe-Signature: t=<seconds>,v1=<hex>[,v1=<hex>...][,v0=...]``.

    Each ``v1`` is HMAC-SHA256 of ``{t}.{body}`` keyed with the whole signing secret (``whsec_``
    included); any one matching passes (Stripe signs with each active secret while one is rolled).
    Other schemes (the test-mode ``v0``) are ignored, as Stripe says, against downgrades. The
    delivery id is the event's ``id``, the event type its ``type``.
    """
    header = d.required("stripe-signature")
    stamps: list[str] = []
    candidates: list[str] = []
    for element in header.split(","):
        key, sep, value = element.strip().partition("=")
        if key == "t" and sep:
            stamps.append(value)
        elif key == "v1" and sep:
            candidates.append(value)
    if len(stamps) != 1 or not candidates:
        raise Refused(
            "missing_signature", "The Stripe-Signature header lacks one t= and a v1= signature."
        )
    d.timestamp("Stripe-Signature t=", stamps[0])
    expected = _hmac256(
        d.secret.encode("utf-8", "surrogatepass"), stamps[0].encode() + b"." + d.body
    )
    if not _any_hex(expected, candidates):
        raise _no_match()
    event = parse_json(d.body)
    if not isinstance(event, dict):
        raise Refused("malformed", "The body is not a Stripe event object.")
    return Verified(label(event.get("id"), "event's id"), _event_type(event), event)


def github_sha256(d: Delivery) -> Verified:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the body with the secret.

    GitHub sends no timestamp, so the tolerance cannot apply: a replayed delivery is caught by
    its ``X-GitHub-Delivery`` id (one per event, kept by GitHub's redeliveries), required and
    kept as the delivery id (the gateway stores each id once). That id is not signed, so a
    captured delivery sent again under a new id cannot be told apart: a limit of GitHub's
    scheme, not of this check. The event type is ``X-GitHub-Event``, followed by ``.`` and the
    payload's ``action`` when it has one (``issues.labeled``). A body sent as
    ``application/x-www-form-urlencoded`` (GitHub's other content type) carries the JSON in its
    ``payload`` field.
    """
    header = d.required("x-hub-signature-256")
    event_name = d.header("x-github-event")
    delivery_id = d.header("x-github-delivery")
    scheme, sep, signature = header.partition("=")
    if scheme != "sha256" or not sep:
        raise Refused("missing_signature", "The X-Hub-Signature-256 header is not sha256=<hex>.")
    expected = _hmac256(d.secret.encode("utf-8", "surrogatepass"), d.body)
    if not _any_hex(expected, [signature]):
        raise _no_match()
    if delivery_id is None or event_name is None:
        raise Refused("malformed", "X-GitHub-Delivery and X-GitHub-Event are required.")
    payload = parse_json(_github_json(d.body))
    event_type = event_name
    action = payload.get("action") if isinstance(payload, dict) else None
    if isinstance(action, str):
        event_type = f"{event_name}.{action}"
    return Verified(
        label(delivery_id, "X-GitHub-Delivery id"), label(event_type, "event type"), payload
    )


def _github_json(body: bytes) -> bytes | str:
    """The JSON of a GitHub body: itself, or the ``payload`` field of a form-encoded one."""
    if not body.startswith(b"payload="):
        return body
    try:
        fields = parse_qsl(body.decode("utf-8"), strict_parsing=True, max_num_fields=1)
    except ValueError:
        raise Refused("malformed", "The form-encoded body is not a single payload field.") from None
    return fields[0][1]


#: Headers of the generic scheme (docs/webhooks-schemes.md, "hmac-sha256").
GENERIC_SIGNATURE = "x-signature-256"
GENERIC_TIMESTAMP = "x-signature-timestamp"
GENERIC_ID = "x-delivery-id"


def hmac_sha256(d: Delivery) -> Verified:
    """The fleet's generic scheme, for the sandbox and custom senders.

    Headers: ``X-Signature-Timestamp: <unix seconds>``, ``X-Signature-256: sha256=<hex>``
    (several, comma-separated, during a secret rotation), and optionally
    ``X-Delivery-Id: <id>`` (1 to 200 characters of letters, digits, ``_``, ``-`` and ``:``;
    no ``.``). The signature is HMAC-SHA256, keyed with the secret's UTF-8 bytes, of
    ``{timestamp}.{delivery id or nothing}.{body}``, so the id is signed too and a delivery
    without one signs ``{timestamp}..{body}``. The delivery id is the header's, else
    ``sha256:`` and the digest of the signed text; the event type is the payload's ``type``
    when it is a string.
    """
    header = d.required(GENERIC_SIGNATURE)
    stamp = d.required(GENERIC_TIMESTAMP)
    delivery_id = d.header(GENERIC_ID)
    d.timestamp(GENERIC_TIMESTAMP, stamp)
    candidates = []
    for item in header.split(","):
        scheme, sep, signature = item.strip().partition("=")
        if scheme == "sha256" and sep:
            candidates.append(signature)
    if not candidates:
        raise Refused("missing_signature", "The X-Signature-256 header is not sha256=<hex>.")
    signed = f"{stamp}.{delivery_id or ''}.".encode("utf-8", "surrogatepass") + d.body
    if not _any_hex(_hmac256(d.secret.encode("utf-8", "surrogatepass"), signed), candidates):
        raise _no_match()
    if delivery_id is not None and not _generic_id_ok(delivery_id):
        raise Refused("malformed", "X-Delivery-Id must be 1 to 200 of [A-Za-z0-9_:-].")
    payload = parse_json(d.body)
    return Verified(delivery_id or digest_id(signed), _event_type(payload), payload)


def _generic_id_ok(value: str) -> bool:
    return (
        0 < len(value) <= 200 and value.isascii() and all(c.isalnum() or c in "_-:" for c in value)
    )
