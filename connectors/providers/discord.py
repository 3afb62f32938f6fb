"""Discord's HTTP API v10, declared in ``connectors/manifests/discord.yaml`` and
``discord_webhook.yaml``, with the hooks data cannot express:

- **The message nonce.** Discord takes no idempotency header; it deduplicates Create Message by
  ``nonce`` when ``enforce_nonce`` is true ("If another message was created by the same author
  with the same nonce, that message will be returned and no new message will be created", for
  "the past few minutes"). :meth:`DiscordHooks.perform_action` derives the nonce from the call's
  idempotency key (Discord allows 25 characters: the first 25 hex digits of its SHA-256), and
  :meth:`DiscordHooks.resend_safe` tells the fleet such a message, and an edit, a reaction or
  a read (which set or read the same state again), may be sent again when an answer is lost.
- **Oldest first within a page.** Get Channel Messages lists each page "from newest to oldest",
  even when paging forward with ``after``; :meth:`DiscordHooks.parse_page` puts each page's
  records oldest first, so the stream is read in one order from its first record to its last.
- **A webhook's ``wait=true`` and ``thread_id``**: query parameters of a JSON POST
  (:class:`DiscordWebhookHooks`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import requests

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Answer, Connector
from spark_integrations.connectors.manifest import declared
from spark_integrations.connectors.pagination import Paginator
from spark_integrations.connectors.streams import Page, Stream

__all__ = [
    "NONCE_ACTIONS",
    "Discord",
    "DiscordHooks",
    "DiscordWebhook",
    "DiscordWebhookHooks",
    "nonce_of",
]

#: Actions Discord deduplicates by nonce (Create Message).
NONCE_ACTIONS = frozenset({"create_message"})
#: Actions that set a state: sending one twice changes nothing more (an edit sets the same
#: fields, a reaction the bot already added stays one reaction, a read reads).
REPEATABLE_ACTIONS = frozenset({"edit_message", "add_reaction", "get_message"})
#: Discord's longest string nonce.
NONCE_LENGTH = 25


def nonce_of(idempotency_key: str) -> str:
    """The nonce of a call: the first 25 hex digits of the SHA-256 of its idempotency key (the
    same key always gives the same nonce; Discord accepts at most 25 characters)."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:NONCE_LENGTH]


def _snowflake(record: Mapping[str, Any]) -> int:
    value = record.get("id")
    return int(value) if isinstance(value, str) and value.isdigit() else -1


class DiscordHooks(Connector):
    """The hooks of the Discord connector (its manifest names this class)."""

    #: Discord checks a message's nonce for uniqueness "in the past few minutes" (Create
    #: Message, ``enforce_nonce``): a call is resent within 3 minutes of its first attempt, not
    #: the default 10, so a late resend cannot post the message twice (config retry_window).
    retry_window = 180.0

    @classmethod
    def resend_safe(cls, action: Action) -> bool:
        """A message sent with its nonce, an edit, a reaction and a read are safe to send
        again."""
        return action.name in NONCE_ACTIONS or action.name in REPEATABLE_ACTIONS

    def perform_action(
        self, action: Action, params: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Answer[Any]:
        """Create Message carries the call's nonce, with ``enforce_nonce``."""
        if idempotency_key and action.name in NONCE_ACTIONS:
            params = {**params, "nonce": nonce_of(idempotency_key), "enforce_nonce": True}
        return super().perform_action(action, params, idempotency_key=idempotency_key)

    def parse_page(self, stream: Stream, paginator: Paginator, response: requests.Response) -> Page:
        """The page's messages oldest first (Discord lists them newest first)."""
        page = super().parse_page(stream, paginator, response)
        return replace(page, records=sorted(page.records, key=_snowflake))


#: Execute Webhook's params that go in the query string, not the JSON body.
WEBHOOK_QUERY_PARAMS = ("thread_id",)


class DiscordWebhookHooks(Connector):
    """The hook of the Discord webhook connector: Execute Webhook with ``wait=true``, so the
    answer is the message created, and a message Discord did not save is an error ("when
    false a message that is not saved does not return an error"); ``thread_id`` (post into a
    thread of the webhook's channel) is a query parameter too."""

    def build_request(self, action: Action, params: Mapping[str, Any]) -> dict[str, Any]:
        """The declared request, with ``wait=true`` (and ``thread_id``) in its query."""
        body = {k: v for k, v in params.items() if k not in WEBHOOK_QUERY_PARAMS}
        request = super().build_request(action, body)
        query = {k: params[k] for k in WEBHOOK_QUERY_PARAMS if k in params}
        request["params"] = {**(request.get("params") or {}), "wait": "true", **query}
        return request


Discord = declared(__file__, "discord.yaml")
DiscordWebhook = declared(__file__, "discord_webhook.yaml")
