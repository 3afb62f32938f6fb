"""The ``sandbox`` connector: the fleet's client side of the emulated provider (CONTRACT.md).

It shares no code with the sandbox server (``sandbox/``): it knows the provider only through its
HTTP API, as any connector knows its provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.pagination import CursorPaginator
from spark_integrations.connectors.rules import ErrorRule
from spark_integrations.connectors.streams import Param, Stream
from spark_integrations.connectors.webhook_events import EventRefresh

__all__ = ["SandboxConnector"]


def _items(name: str, **extra: Any) -> Stream:
    """A stream of the sandbox's ``/v1/items`` listing (cursor pages, ``updated_since``)."""
    return Stream(
        name,
        "/v1/items",
        primary_key="id",
        replication_key="updated_at",
        since_param="updated_since",
        paginator=CursorPaginator,
        records_path="data",
        **extra,
    )


class SandboxConnector(Connector):
    """The emulated provider: messages (idempotent), items (paginated), OAuth and API keys."""

    name = "sandbox"
    title = "Sandbox"
    docs_path = "docs/connectors/sandbox.md"
    oauth = True
    secret_keys: ClassVar[tuple[str, ...]] = ("api_key", "username", "password")
    direct_credentials: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("api_key",),
        ("username", "password"),
    )
    actions: ClassVar[tuple[Action, ...]] = (
        Action(
            "create_message",
            "POST",
            "/v1/messages",
            params={"text": str},
            idempotent=True,
        ),
        # The same request with no idempotency key, as with a provider that takes none: an
        # answer lost after the request was sent ends as outcome_unknown instead of a resend.
        Action("create_message_unkeyed", "POST", "/v1/messages", params={"text": str}),
        Action("get_message", "GET", "/v1/messages/{id}", params={"id": str}),
        Action("get_item", "GET", "/v1/items/{id}", params={"id": str}),
    )
    streams: ClassVar[tuple[Stream, ...]] = (
        # Sorted by (updated_at, id); updated_since is inclusive; cursors are opaque.
        _items("items"),
        # The same listing newest first (order=desc): the cursor moves when a run has read
        # back to the previous run's cursor, never page by page.
        _items("items_newest", params={"order": "desc"}, order="newest_first"),
        # The items of one tag (the first word of their name): a stream with a required
        # parameter, given with `syncs add ... --param tag=WORD`.
        _items(
            "items_by_tag",
            parameters=(
                Param("tag", required=True, description="the first word of the items' names"),
            ),
        ),
    )
    error_rules: ClassVar[tuple[ErrorRule, ...]] = (
        # A request under the same idempotency key is still in progress (one a worker sent
        # before it died, say): send again once it is done, and the sandbox replays its answer.
        ErrorRule(
            "retry",
            status=409,
            body={"error": "idempotency_key_in_use"},
            wait=1,
            message="sandbox is still answering a request with this idempotency key",
        ),
    )
    webhook_scheme = "standard-webhooks"
    # An item's event (item.created, item.updated) refreshes the connection's item syncs.
    webhook_events: ClassVar[Mapping[str, tuple[EventRefresh, ...]]] = {
        "item": (
            EventRefresh("items"),
            EventRefresh("items_newest"),
            EventRefresh("items_by_tag"),
        ),
    }

    rate_limit = 100.0
    # The sandbox's X-RateLimit-Limit counts requests per second, and its buckets hold a burst
    # of 0.1 s by default: the fleet uses a third of that, leaving room for network jitter.
    rate_limit_window = 1.0
    rate_limit_burst = 0.03
    # A token bucket: X-RateLimit-Remaining is 0 after nearly every request at the limit, and
    # X-RateLimit-Reset is when the bucket is full again, not when the next request may pass.
    pause_when_spent = False
    idempotency_header = "Idempotency-Key"

    authorize_url = "/oauth/authorize"
    token_url = "/oauth/token"
    oauth_scopes = ("items:read", "messages:write")
    # The sandbox answers token requests at once: a dead refresher stalls a connection for
    # 12 s at most (connect + read + margin), not the default 28 s.
    token_timeout = (2.0, 5.0)
