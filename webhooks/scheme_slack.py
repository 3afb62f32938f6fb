"""Slack's ``v0`` request signing, for the Events API, interactivity and slash commands.

``X-Slack-Signature: v0=<hex>`` is HMAC-SHA256, keyed with the app's signing secret, of
``v0:{X-Slack-Request-Timestamp}:{body}``; the timestamp must be within the tolerance. Slack
sends three kinds of body to the same kind of URL, all signed the same way:

- Events API: JSON. ``url_verification`` carries a ``challenge`` that is answered at once (JSON
  ``{"challenge": ...}``) and stored nowhere. ``event_callback`` carries the event: its
  ``event_id`` is the delivery id (Slack retries with the same one), its ``event.type``
  (``message``, ``app_mention``, ...) the event type. Other types keep their ``type``.
- Interactivity (buttons, modals, shortcuts): a form with one ``payload`` field holding JSON; the
  event type is the payload's ``type`` (``block_actions``, ``view_submission``, ...).
- Slash commands: a form of fields (``command``, ``text``, ``user_id``, ...), stored as an object
  of those fields; the event type is ``slash_command``.

Interactivity and slash commands have no id of their own (Slack never retries them), so their
delivery id is ``sha256:`` and the digest of the signed text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qsl

from spark_integrations.webhooks.scheme_base import (
    Answer,
    Delivery,
    Refused,
    Verified,
    digest_id,
    hex_digest,
    label,
    parse_json,
    same,
)

__all__ = ["slack_v0"]

#: Most fields read from a form-encoded body (a slash command sends about a dozen).
MAX_FORM_FIELDS = 100
#: Longest ``challenge`` echoed back.
MAX_CHALLENGE = 1024


def slack_v0(d: Delivery) -> Verified:
    """Verify a Slack request; see the module's docstring for what each body becomes."""
    header = d.required("x-slack-signature")
    raw_stamp = d.required("x-slack-request-timestamp")
    d.timestamp("x-slack-request-timestamp", raw_stamp)
    version, sep, signature = header.partition("=")
    given = hex_digest(signature) if version == "v0" and sep else None
    if given is None:
        raise Refused("missing_signature", "The X-Slack-Signature header is not v0=<hex>.")
    signed = f"v0:{raw_stamp}:".encode() + d.body
    expected = hmac.new(d.secret.encode("utf-8", "surrogatepass"), signed, hashlib.sha256)
    if not same(expected.digest(), given):
        raise Refused(
            "bad_signature", "The X-Slack-Signature does not match this connection's secret."
        )
    if d.body.lstrip()[:1] == b"{":
        return _events_api(parse_json(d.body), signed)
    return _form(d.body, signed)


def _events_api(payload: Any, signed: bytes) -> Verified:
    if not isinstance(payload, dict):
        raise Refused("malformed", "The body is not a Slack event object.")
    kind = payload.get("type")
    if kind == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str) or not 0 < len(challenge) <= MAX_CHALLENGE:
            raise Refused("malformed", "The url_verification challenge is missing or too long.")
        body = json.dumps({"challenge": challenge}).encode()
        answer = Answer(200, body, "application/json")
        return Verified(digest_id(signed), "url_verification", payload, answer)
    if kind == "event_callback":
        event = payload.get("event")
        inner = event.get("type") if isinstance(event, dict) else None
        name = label(inner if isinstance(inner, str) else kind, "event type")
        return Verified(label(payload.get("event_id"), "event_id"), name, payload)
    other = label(kind, "event type") if isinstance(kind, str) else None
    return Verified(digest_id(signed), other, payload)


def _form(body: bytes, signed: bytes) -> Verified:
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError included
        raise Refused("malformed", "The body is neither JSON nor a form Slack sends.") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Refused("malformed", "The form-encoded body names a field twice.")
    if "payload" in fields:
        payload = parse_json(fields["payload"], "The payload field")
        kind = payload.get("type") if isinstance(payload, dict) else None
        if not isinstance(kind, str):
            raise Refused("malformed", "The interactivity payload has no type.")
        return Verified(digest_id(signed), label(kind, "event type"), payload)
    if "command" not in fields:
        raise Refused("malformed", "The form-encoded body is no Slack command nor interaction.")
    return Verified(digest_id(signed), "slash_command", fields)
