"""Webhook signature schemes: whether a delivery comes from its provider, and what it is.

One call, :func:`verify`, for every scheme a connector can declare (:data:`SCHEMES`, the
manifest's ``webhooks.scheme`` enum less ``none``). It is pure: no clock, store or network of
its own; the gateway hands it the connection's secret, the request as received and the time.
It returns :class:`Verified` (store the delivery under its ``delivery_id``; or, with ``answer``
set, reply with that at once and store nothing) or raises :class:`Refused`, whose ``status``
(401 or 400) and ``reason`` (one of :data:`REASONS`) are what the gateway answers and counts.
No other exception leaves it, whatever the input.

- ``standard-webhooks``: ``webhook-signature`` over ``{webhook-id}.{timestamp}.{body}``;
  delivery id ``webhook-id``.
- ``stripe``: ``Stripe-Signature`` ``t=``, ``v1=`` over ``{t}.{body}``; the event's ``id``.
- ``github-sha256``: ``X-Hub-Signature-256`` over the body; ``X-GitHub-Delivery``.
- ``slack-v0``: ``X-Slack-Signature`` over ``v0:{timestamp}:{body}``; ``event_id``, else a digest.
- ``discord-ed25519``: ``X-Signature-Ed25519`` over ``{timestamp}{body}``; the interaction's ``id``.
- ``ms-graph-client-state``: each notification's ``clientState``; a digest of the body.
- ``hmac-sha256``: ``X-Signature-256`` over ``{timestamp}.{id}.{body}``; ``X-Delivery-Id``, else
  a digest.

"Digest" is ``sha256:`` and the hex SHA-256 of what the sender signed. docs/webhooks-schemes.md
describes each scheme: headers, what is signed, delivery id, event type, handshake, sources.

Order of the checks, in every scheme: a secret (else 401 ``no_secret``); each header read once
(two lines of one name: 400 ``doubled_header``); present (401 ``missing_signature``); a
timestamp of digits (401 ``bad_timestamp``) within ``tolerance`` seconds of ``now`` (401
``stale_timestamp``); the signature, compared in constant time (401 ``bad_signature``); only
then the body: strict JSON, ids and types of at most 200 printable characters (400
``malformed``). So unsigned garbage is 401 and signed garbage 400.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from spark_integrations.webhooks.scheme_base import (
    REASONS,
    Answer,
    Delivery,
    Refused,
    Verified,
)
from spark_integrations.webhooks.scheme_discord import discord_ed25519
from spark_integrations.webhooks.scheme_graph import ms_graph_client_state
from spark_integrations.webhooks.scheme_hmac import (
    github_sha256,
    hmac_sha256,
    standard_webhooks,
    stripe,
)
from spark_integrations.webhooks.scheme_slack import slack_v0

__all__ = ["REASONS", "SCHEMES", "Answer", "Refused", "Verified", "verify"]

log = logging.getLogger("webhooks")

_VERIFIERS: dict[str, Callable[[Delivery], Verified]] = {
    "standard-webhooks": standard_webhooks,
    "stripe": stripe,
    "github-sha256": github_sha256,
    "slack-v0": slack_v0,
    "discord-ed25519": discord_ed25519,
    "ms-graph-client-state": ms_graph_client_state,
    "hmac-sha256": hmac_sha256,
}
#: Every scheme with an intake: the manifest's ``webhooks.scheme`` values other than ``none``.
SCHEMES: tuple[str, ...] = tuple(_VERIFIERS)


def verify(
    scheme: str,
    *,
    secret: str | None,
    headers: Sequence[tuple[str, str]],
    query: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: int,
) -> Verified:
    """Check one delivery against ``scheme`` and the connection's ``secret``.

    Args:
        scheme: one of :data:`SCHEMES`.
        secret: the connection's ``webhook_secret`` (None or empty: refused, 401).
        headers: the request's headers as received, names in any case, repeats kept.
        query: the request's query parameters, decoded (Graph's ``validationToken``).
        body: the request body, byte for byte.
        now: the gateway's clock, in Unix seconds.
        tolerance: seconds a signed timestamp may be from ``now``, either way.

    Returns:
        The delivery's id, event type and payload, or the handshake answer to send.

    Raises:
        Refused: the delivery must not be stored; ``status`` and ``reason`` say why.
    """
    verifier = _VERIFIERS.get(scheme) if isinstance(scheme, str) else None
    if verifier is None:
        raise Refused(
            "unknown_scheme", "This connector declares no webhook scheme the gateway knows."
        )
    if not secret or not isinstance(secret, str):
        raise Refused(
            "no_secret", "This connection has no webhook_secret to verify deliveries with."
        )
    try:
        delivery = Delivery(
            secret=secret, headers=headers, query=query, body=body, now=now, tolerance=tolerance
        )
        return verifier(delivery)
    except Refused:
        raise
    except Exception as exc:
        # A defect of ours, never the sender's: refuse rather than answer 500, and say what
        # kind of error it was (not its text, which could quote the request).
        log.error("verifying a %s webhook failed unexpectedly: %s", scheme, type(exc).__name__)
        raise Refused("malformed", "The delivery could not be read.") from exc
