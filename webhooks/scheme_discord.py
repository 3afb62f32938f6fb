"""Discord interactions: Ed25519 signatures, and the PING every interactions URL must answer.

Discord signs ``{X-Signature-Timestamp}{body}`` (the timestamp's text, then the body, nothing
between) with the application's key; ``X-Signature-Ed25519`` holds the signature in hex and the
connection's ``webhook_secret`` holds the application's *public* key in hex, as the developer
portal shows it. The signature is checked with ``cryptography``'s Ed25519; the timestamp must be
within the tolerance too (Discord's own examples skip that check; it costs nothing and closes
replays).

Discord sends invalid signatures on purpose to check that they are refused (401), then a PING
(``type`` 1), answered at once with ``{"type": 1}`` and stored nowhere. Every other interaction
is stored with its ``id`` as delivery id and an event type named after its kind:
``application_command.<command name>``, ``application_command_autocomplete.<command name>``,
``message_component``, ``modal_submit``, or ``interaction.<type number>`` for a kind this code
does not know yet. The gateway replies 202 to these, which Discord does not take as an
interaction response: a connector that must answer in the channel does so by a follow-up call.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from spark_integrations.webhooks.scheme_base import (
    Answer,
    Delivery,
    Refused,
    Verified,
    digest_id,
    hex_digest,
    label,
    parse_json,
)

__all__ = ["discord_ed25519"]

PING = 1
PONG = Answer(200, b'{"type":1}', "application/json")
#: Interaction types by number (Discord's InteractionType).
KINDS = {
    2: "application_command",
    3: "message_component",
    4: "application_command_autocomplete",
    5: "modal_submit",
}
#: Kinds whose event type names the command (``application_command.deploy``).
NAMED = {2, 4}


def _public_key(secret: str) -> Ed25519PublicKey:
    raw = hex_digest(secret.strip())
    if raw is None or len(raw) != 32:
        raise Refused(
            "no_secret", "This connection's webhook secret is not an Ed25519 public key in hex."
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def discord_ed25519(d: Delivery) -> Verified:
    """Verify a Discord interaction; see the module's docstring for what each one becomes."""
    signature = d.required("x-signature-ed25519")
    raw_stamp = d.required("x-signature-timestamp")
    key = _public_key(d.secret)
    d.timestamp("x-signature-timestamp", raw_stamp)
    given = hex_digest(signature)
    if given is None or len(given) != 64:
        raise Refused("missing_signature", "The X-Signature-Ed25519 header is not 64 bytes in hex.")
    signed = raw_stamp.encode() + d.body
    try:
        key.verify(given, signed)
    except InvalidSignature:
        raise Refused(
            "bad_signature", "The X-Signature-Ed25519 does not match this connection's key."
        ) from None
    interaction = parse_json(d.body)
    if not isinstance(interaction, dict) or type(interaction.get("type")) is not int:
        raise Refused("malformed", "The body is not a Discord interaction.")
    kind: int = interaction["type"]
    if kind == PING:
        return Verified(digest_id(signed), "ping", interaction, PONG)
    return Verified(
        label(interaction.get("id"), "interaction id"), _event_type(interaction), interaction
    )


def _event_type(interaction: dict[str, Any]) -> str:
    kind: int = interaction["type"]
    name = KINDS.get(kind)
    if name is None:
        return label(f"interaction.{kind}", "event type")
    data = interaction.get("data")
    command = data.get("name") if isinstance(data, dict) else None
    if kind in NAMED and isinstance(command, str):
        return label(f"{name}.{command}", "event type")
    return name
