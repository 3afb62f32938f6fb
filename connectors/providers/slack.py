"""Slack's Web API, declared in ``connectors/manifests/slack.yaml``, with one Python hook: the
look for a message whose answer was lost (:mod:`connectors.looking`).

``chat.postMessage`` takes no idempotency key: a post whose answer was lost (the connection
dropped, a timeout, the worker killed mid-request) cannot be sent again blindly, or the channel
may show the message twice. Slack's own data can tell: a message posted to a channel is in that
channel's history (``conversations.history``, newest first, from ``oldest``). The look reads the
history from the call's first attempt (less :data:`~connectors.looking.LOOK_MARGIN`) through the
declared ``messages`` stream, and a message with the same text, posted by the connection's own
bot (``auth.test`` names it: ``bot_id``, else ``user_id``), is the one the lost request made.
Slack does not store a text exactly as sent: it escapes ``&``, ``<`` and ``>``, and marks up
the links it finds (``https://x`` is stored as ``<https://x>``, an address as
``<mailto:a@b|a@b>``); the texts are compared with the escapes undone, and with the markup
read as the text it shows as well, so a post with a link is found, not taken for absent and
posted twice:

- found: the call returns it as ``chat.postMessage`` would have (``ok``, ``channel``, ``ts``,
  ``message``);
- absent: the history since then was read to its end, without it: the message is posted;
- unknown: Slack refused a read (``missing_scope``: the look needs ``channels:history`` or the
  private/IM equivalents), the window holds more than :data:`LOOK_PAGES` pages, or the message
  was a thread reply (replies are not in the channel's history unless broadcast).

Two posts of the same text by the same bot to the same channel within the window look alike:
the look then reports found, so a post whose outcome was in doubt may be left out, never shown
twice. Everything else about Slack (HTTP 200 errors, tiers, bearer tokens, OAuth v2 with
rotation, cursor pagination) is data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.looking import Look
from spark_integrations.connectors.manifest import declared
from spark_integrations.errors import ProviderError, RetriableError

__all__ = ["LOOKABLE_ACTIONS", "LOOK_PAGES", "Slack", "SlackHooks"]

#: Actions whose lost answers a look can settle: a message posted to a channel.
LOOKABLE_ACTIONS = frozenset({"post_message"})
#: Pages of history (200 messages each) a look reads at most before it says unknown.
LOOK_PAGES = 10

# Slack escapes these three in the text it stores ("Formatting text for app surfaces").
_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
# Slack's markup of links, mentions and channels: <TARGET> or <TARGET|LABEL>.
_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def _unescaped(value: str) -> str:
    for escaped, plain in _ESCAPES:
        value = value.replace(escaped, plain)
    return value.strip()


def _plain(text: Any) -> frozenset[str]:
    """The forms of a message's text to compare what was sent with what Slack stored: Slack's
    three escapes undone, and also its markup read as the text it shows (``<URL>`` as the
    URL, ``<URL|label>`` as the label). Two texts are the same when their forms meet."""
    value = text if isinstance(text, str) else ""
    shown = _MARKUP.sub(lambda m: m.group(2) if m.group(2) is not None else m.group(1), value)
    return frozenset({_unescaped(value), _unescaped(shown)})


class SlackHooks(Connector):
    """The hook of the Slack connector (its manifest names this class)."""

    def lookable(self, action: Action) -> bool:
        """``post_message`` can be looked for in its channel's history."""
        return action.name in LOOKABLE_ACTIONS

    def look(self, action: Action, params: dict[str, Any], since: float) -> Look:
        """Look for the message in its channel's history since ``since`` (module docstring).

        Raises:
            RetriableError: Slack asked to wait (429) or was unavailable: look again later.
        """
        channel = str(params.get("channel") or "")
        oldest = f"{max(since, 0.0):.6f}"
        where = f"the history of Slack channel {channel} since {oldest}"
        if not self.lookable(action):
            return Look("unknown", detail=f"nothing ({action.name} cannot be looked for)")
        if params.get("thread_ts") and not params.get("reply_broadcast"):
            return Look("unknown", detail=f"{where} (a thread reply is not in it)")
        try:
            identity = self.identity()
            found = self.find(channel, oldest, _plain(params.get("text")), identity)
        except RetriableError:
            raise
        except ProviderError as exc:
            return Look("unknown", detail=f"{where}, which Slack refused to read ({exc})")
        if found is None:
            return Look("unknown", detail=f"{where}, longer than {LOOK_PAGES} pages")
        if not found:
            return Look("absent", detail=where)
        data = {"ok": True, "channel": channel, "ts": found.get("ts"), "message": found}
        return Look("found", data=data, detail=where)

    def identity(self) -> dict[str, str]:
        """Who the connection posts as (``auth.test``): its ``bot_id``, else its user; empty
        when Slack does not say (messages are then matched by text alone)."""
        body = self.request("POST", "/auth.test").json()
        if isinstance(body, Mapping) and isinstance(body.get("bot_id"), str):
            return {"bot_id": body["bot_id"]}
        if isinstance(body, Mapping) and isinstance(body.get("user_id"), str):
            return {"user": body["user_id"]}
        return {}

    def find(
        self, channel: str, oldest: str, text: frozenset[str], identity: Mapping[str, str]
    ) -> dict[str, Any] | None:
        """The first message of the history since ``oldest`` with ``text`` (its forms, as
        :func:`_plain` makes them) posted as
        ``identity``; ``{}`` when the history was read to its end without one; ``None`` when
        it is longer than :data:`LOOK_PAGES` pages."""
        stream = self.get_stream("messages")
        position: Any = None
        for _ in range(LOOK_PAGES):
            page = self.perform_page(
                stream, since=oldest, position=position, params={"channel": channel}
            ).value
            for message in page.records:
                same = all(message.get(k) == v for k, v in identity.items())
                if same and _plain(message.get("text")) & text:
                    return message
            if page.finished:
                return {}
            position = page.position
        return None


Slack = declared(__file__, "slack.yaml")
