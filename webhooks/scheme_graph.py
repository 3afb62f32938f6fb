"""Microsoft Graph change notifications (Teams, Outlook, OneDrive...): the validation handshake
and ``clientState``.

Graph signs nothing. When a subscription is created or renewed it POSTs to the notification URL
with a ``validationToken`` query parameter and expects, within 10 seconds, 200 with the token
as ``text/plain``: that is answered at once (the query value as the gateway decoded it) and
stored nowhere. Notifications then arrive as ``{"value": [...]}``, each item carrying the
``clientState`` the subscription was created with: the connection's ``webhook_secret``. Every
item's ``clientState`` must equal it (compared in constant time), or the whole delivery is
refused with 401; a body that is not such an object cannot prove its sender and is 401 too.

The delivery id is ``sha256:`` and the digest of the body (Graph retries a notification with the
same body). The event type is the items' ``changeType`` (``created``, ``updated``, ``deleted``),
or ``lifecycle.`` and the ``lifecycleEvent`` for lifecycle notifications
(``lifecycle.reauthorizationRequired``, ``lifecycle.subscriptionRemoved``, ``lifecycle.missed``);
``mixed`` when the items of one delivery differ. Rich notifications' ``validationTokens`` (JWTs)
are not checked here: their encrypted content is stored as it came.
"""

from __future__ import annotations

from typing import Any

from spark_integrations.webhooks.scheme_base import (
    Answer,
    Delivery,
    Refused,
    Verified,
    digest_id,
    label,
    parse_json,
    same,
)

__all__ = ["ms_graph_client_state"]

#: Longest validation token echoed back.
MAX_TOKEN = 4096


def ms_graph_client_state(d: Delivery) -> Verified:
    """Verify a Graph notification, or answer its validation handshake."""
    token = d.query.get("validationToken")
    if token is not None:
        if not (isinstance(token, str) and 0 < len(token) <= MAX_TOKEN and token.isprintable()):
            raise Refused("malformed", "The validationToken is empty, too long or not text.")
        answer = Answer(200, token.encode("utf-8"), "text/plain; charset=utf-8")
        return Verified(digest_id(token.encode("utf-8")), "validation", None, answer)
    payload, items = _notifications(d.body)
    secret = d.secret.encode("utf-8", "surrogatepass")
    for item in items:
        state = item.get("clientState")
        if not isinstance(state, str):
            raise Refused("missing_signature", "A notification carries no clientState.")
        if not same(secret, state):
            raise Refused("bad_signature", "A notification's clientState is not this connection's.")
    return Verified(digest_id(d.body), _event_type(items), payload)


def _notifications(body: bytes) -> tuple[Any, list[dict[str, Any]]]:
    """The body's JSON and its notifications, or 401: nothing less can prove the sender."""
    try:
        doc = parse_json(body)
    except Refused:
        doc = None
    items = doc.get("value") if isinstance(doc, dict) else None
    if not (isinstance(items, list) and items and all(isinstance(i, dict) for i in items)):
        raise Refused("missing_signature", "The body is not a list of Graph notifications.")
    return doc, items


def _event_type(items: list[dict[str, Any]]) -> str | None:
    kinds: set[str | None] = set()
    for item in items:
        change, lifecycle = item.get("changeType"), item.get("lifecycleEvent")
        if isinstance(lifecycle, str):
            kinds.add(label(f"lifecycle.{lifecycle}", "lifecycleEvent"))
        elif isinstance(change, str):
            kinds.add(label(change, "changeType"))
        else:
            kinds.add(None)
    return kinds.pop() if len(kinds) == 1 else "mixed"
