"""A loopback emulator of Discord's HTTP API v10: channel messages and webhook execution.

Written from Discord's documentation (docs.discord.com/developers: "API Reference", "Rate
Limits", "Message" and "Webhook" resources, "Opcodes and Status Codes"), sharing no code with
``connectors/``:

- Routes live under ``/api/v10`` (``/api`` alone too, as Discord routes an unversioned path to a
  default version); bots authenticate with ``Authorization: Bot TOKEN``; a missing or unknown
  token is ``401`` ``{"message": ..., "code": ...}``.
- ``POST /channels/{id}/messages`` creates a message (at least one of ``content``, ``embeds``,
  ``sticker_ids``, ``components``, ``poll``; ``content`` up to 2,000 characters). With a
  ``nonce`` (up to 25 characters) and ``enforce_nonce: true``, a second message with the same
  nonce from the same author within a few minutes returns the first and creates nothing.
- ``PATCH /channels/{id}/messages/{id}`` edits one; ``GET /channels/{id}/messages`` lists with
  ``before``/``after``/``around`` (mutually exclusive) and ``limit`` (1-100, default 50). The
  array is always sorted newest to oldest ("Returns an array of message objects from newest to
  oldest"); with ``after`` it holds the ``limit`` messages right after that id, so a reader that
  follows the greatest id it has seen reads the channel oldest page first.
- ``POST /webhooks/{id}/{token}`` executes a webhook without any Authorization; ``?wait=true``
  answers the message, else ``204``.
- Per-route rate limits: every answer carries ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``
  (epoch seconds), ``-Reset-After`` (seconds) and ``-Bucket`` (the same hash for one route
  whatever its channel, while the count is kept per top-level resource: channel or webhook).
  Past the limit: ``429`` with ``Retry-After``, ``X-RateLimit-Scope: user`` and
  ``{"message", "retry_after", "global": false}``. The global limit (50 requests per second per
  bot) answers ``429`` with ``X-RateLimit-Global: true`` and ``X-RateLimit-Scope: global``.

Injected errors (:meth:`Emulator.inject`): ``retry`` (502), ``unknown`` (500), ``reauth``
(401), ``fatal`` (403 Missing Permissions), ``not_found``, ``invalid``, ``rate_limited`` (a
route's 429 with its headers), ``global`` (the global 429) and ``lost`` (the request is carried
out, then the connection closes without an answer).
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from tests.emulators.common import Emulator, Limiter, Request, Response, Route
from tests.emulators.discord_limits import BUCKETS, DiscordLimits, _error

__all__ = ["BUCKETS", "Discord"]

_PREFIX = r"/api(?:/v10)?"
DISCORD_EPOCH_MS = 1_420_070_400_000
#: Injected errors by class, as Discord answers them.
ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "retry": (502, {"message": "502: Bad Gateway", "code": 0}),
    "unknown": (500, {"message": "500: Internal Server Error", "code": 0}),
    "reauth": (401, {"message": "401: Unauthorized", "code": 0}),
    "fatal": (403, {"message": "Missing Permissions", "code": 50013}),
    "not_found": (404, {"message": "Unknown Channel", "code": 10003}),
    "invalid": (400, {"message": "Cannot send an empty message", "code": 50006}),
}
CONTENT_LIMIT = 2000
NONCE_LIMIT = 25


class Discord(DiscordLimits, Emulator):
    """Discord's API v10: channel messages for bots, and webhook execution."""

    name = "discord"

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = ("bot-test-token",),
        route_limits: dict[str, tuple[int, float]] | None = None,
        global_limit: tuple[int, float] = (50, 1.0),
        nonce_window: float = 300.0,
        rate_limit_headers: bool = True,
    ) -> None:
        """Args:
        tokens: valid bot tokens.
        route_limits: ``(requests, seconds)`` per route name (default 5 per 5 s each).
        global_limit: ``(requests, seconds)`` per bot across routes.
        nonce_window: seconds a nonce is remembered under ``enforce_nonce``.
        rate_limit_headers: send the ``X-RateLimit-*`` headers on every answer.
        """
        self.bot_tokens = set(tokens)
        self._route_limits = {name: (5, 5.0) for name in BUCKETS}
        self._route_limits.update(route_limits or {})
        self._global_limit = global_limit
        self.nonce_window = nonce_window
        self.rate_limit_headers = rate_limit_headers
        super().__init__()
        self.reset_state()

    # -- data ------------------------------------------------------------------------------

    def reset_state(self) -> None:
        """One guild text channel, the documented example's, and one webhook on it."""
        with self.lock:
            self.channels: dict[str, list[dict[str, Any]]] = {}
            self.webhooks: dict[str, dict[str, str]] = {}
            self._nonces: dict[tuple[str, str], tuple[float, str]] = {}
            self._increment = itertools.count()
            self._last_id = 0
            # Routes in one bucket share its count (the first route's limit sets it).
            self._limiters: dict[str, Limiter] = {}
            for name, limit in self._route_limits.items():
                self._limiters.setdefault(BUCKETS[name], Limiter(*limit))
            self._global = Limiter(*self._global_limit)
        self.add_channel("290926798999357250")
        self.add_webhook(
            "223704706495545344",
            "3d89bb7572e0fb30d8128367b3b1b44fecd1726de135cbe28a41f8b2f777c372ba2939e72279b94526ff5d1bd4358d65cf11",
            "290926798999357250",
        )

    def add_channel(self, channel_id: str) -> None:
        """Seed a text channel the bot may read and write."""
        with self.lock:
            self.channels.setdefault(channel_id, [])

    def add_webhook(self, webhook_id: str, token: str, channel_id: str) -> None:
        """Seed an incoming webhook posting to ``channel_id``."""
        self.add_channel(channel_id)
        with self.lock:
            self.webhooks[webhook_id] = {"token": token, "channel_id": channel_id}

    def snowflake(self) -> str:
        """A new id: milliseconds since Discord's epoch << 22, an increment in the low bits."""
        with self.lock:
            value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (
                next(self._increment) & 0xFFF
            )
            value = max(value, self._last_id + 1)
            self._last_id = value
            return str(value)

    def seed_messages(self, channel_id: str, count: int) -> list[str]:
        """Post ``count`` messages from another user; returns their ids, oldest first."""
        author = {"id": "53908099506183680", "username": "Mason", "discriminator": "9999"}
        return [
            self._store(channel_id, {"content": f"message {i}"}, author)["id"] for i in range(count)
        ]

    def messages(self, channel_id: str) -> list[dict[str, Any]]:
        """The messages of a channel, oldest first (for assertions)."""
        with self.lock:
            return json.loads(json.dumps(self.channels.get(channel_id, [])))  # type: ignore[no-any-return]

    def _store(
        self, channel_id: str, body: dict[str, Any], author: dict[str, Any]
    ) -> dict[str, Any]:
        message = {
            "id": self.snowflake(),
            "channel_id": channel_id,
            "type": 0,
            "content": body.get("content") or "",
            "author": author,
            "attachments": [],
            "embeds": body.get("embeds") or [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": bool(body.get("tts")),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "edited_timestamp": None,
            "flags": 0,
            "components": [],
        }
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        with self.lock:
            self.channels[channel_id].append(message)
        return dict(message)

    # -- plumbing --------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        channel = _PREFIX + r"/channels/(?P<channel_id>[0-9]+)/messages"
        return [
            Route("POST", channel, self.create_message, "create_message"),
            Route("GET", channel, self.list_messages, "list_messages"),
            Route("PATCH", channel + r"/(?P<message_id>[0-9]+)", self.edit_message, "edit_message"),
            Route("GET", channel + r"/(?P<message_id>[0-9]+)", self.get_message, "get_message"),
            Route(
                "PUT",
                channel + r"/(?P<message_id>[0-9]+)/reactions/(?P<emoji>[^/]+)/@me",
                self.add_reaction,
                "add_reaction",
            ),
            Route(
                "POST",
                _PREFIX + r"/webhooks/(?P<webhook_id>[0-9]+)/(?P<token>[^/]+)",
                self.execute_webhook,
                "execute_webhook",
            ),
        ]

    def not_found(self, req: Request) -> Response:
        return _error(404, "404: Not Found", 0)

    def injected(self, kind: str, req: Request) -> Response:
        route, _ = self._match(req)
        name = route.name if route else "list_messages"
        if kind == "rate_limited":
            return self._limited(name, 1.0, scope="user")
        if kind == "global":
            return self._global_limited(1.0)
        if kind == "lost":  # carried out, then the connection drops before the answer
            if route is not None:
                _, groups = self._match(req)
                route.handler(req, **groups)
            return Response(drop=True)
        if kind not in ERRORS:
            raise ValueError(f"discord emulator has no injected error {kind!r}")
        status, body = ERRORS[kind]
        return Response.json(dict(body), status)

    def _answer(self, headers: dict[str, str], body: Any, status: int = 200) -> Response:
        response = Response.json(body, status, **headers)
        if status == 204:
            response.body = None
            response.headers.pop("Content-Type", None)
        return response

    # -- routes ----------------------------------------------------------------------------

    def _message_problem(self, body: Any) -> Response | None:
        if not isinstance(body, dict):
            return _error(400, "Invalid Form Body", 50035)
        content = body.get("content")
        if isinstance(content, str) and len(content) > CONTENT_LIMIT:
            errors = {
                "content": {
                    "_errors": [
                        {
                            "code": "BASE_TYPE_MAX_LENGTH",
                            "message": f"Must be {CONTENT_LIMIT} or fewer in length.",
                        }
                    ]
                }
            }
            return _error(400, "Invalid Form Body", 50035, errors=errors)
        return None

    def create_message(self, req: Request, channel_id: str) -> Response:
        stop, headers = self._admit(req, "create_message", channel_id)
        if stop:
            return stop
        with self.lock:
            known = channel_id in self.channels
        if not known:
            return _error(404, "Unknown Channel", 10003)
        body = req.json()
        problem = self._message_problem(body)
        if problem:
            return problem
        if not any(body.get(k) for k in ("content", "embeds", "sticker_ids", "components", "poll")):
            return _error(400, "Cannot send an empty message", 50006)
        nonce = body.get("nonce")
        if isinstance(nonce, str) and len(nonce) > NONCE_LIMIT:
            errors = {
                "nonce": {
                    "_errors": [
                        {
                            "code": "BASE_TYPE_BAD_LENGTH",
                            "message": "Must be between 1 and 25 in length.",
                        }
                    ]
                }
            }
            return _error(400, "Invalid Form Body", 50035, errors=errors)
        author = {"id": "1234567890123456789", "username": "spark", "bot": True}
        key = (author["id"], str(nonce))
        with self.lock:
            if nonce is not None and body.get("enforce_nonce"):
                seen = self._nonces.get(key)
                if seen and time.monotonic() - seen[0] < self.nonce_window:
                    original = next(m for m in self.channels[channel_id] if m["id"] == seen[1])
                    self.counters["deduplicated"] += 1
                    return self._answer(headers, dict(original))
            message = self._store(channel_id, body, author)
            self.counters["created"] += 1
            if nonce is not None:
                self._nonces[key] = (time.monotonic(), message["id"])
        return self._answer(headers, message)

    def edit_message(self, req: Request, channel_id: str, message_id: str) -> Response:
        stop, headers = self._admit(req, "edit_message", channel_id)
        if stop:
            return stop
        body = req.json()
        problem = self._message_problem(body)
        if problem:
            return problem
        with self.lock:
            if channel_id not in self.channels:
                return _error(404, "Unknown Channel", 10003)
            message = next((m for m in self.channels[channel_id] if m["id"] == message_id), None)
            if message is None:
                return _error(404, "Unknown Message", 10008)
            if not message["author"].get("bot"):
                return _error(403, "Cannot edit a message authored by another user", 50005)
            for field in ("content", "embeds", "flags", "components", "allowed_mentions"):
                if field in body and field != "allowed_mentions":
                    message[field] = body[field]
            message["edited_timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
            return self._answer(headers, dict(message))

    def _message(self, channel_id: str, message_id: str) -> dict[str, Any] | Response:
        with self.lock:
            if channel_id not in self.channels:
                return _error(404, "Unknown Channel", 10003)
            found = next((m for m in self.channels[channel_id] if m["id"] == message_id), None)
        return found if found is not None else _error(404, "Unknown Message", 10008)

    def get_message(self, req: Request, channel_id: str, message_id: str) -> Response:
        stop, headers = self._admit(req, "get_message", channel_id)
        if stop:
            return stop
        found = self._message(channel_id, message_id)
        if isinstance(found, Response):
            return found
        return self._answer(headers, dict(found))

    def add_reaction(self, req: Request, channel_id: str, message_id: str, emoji: str) -> Response:
        """Create Reaction: 204; adding one the bot already added changes nothing."""
        stop, headers = self._admit(req, "add_reaction", channel_id)
        if stop:
            return stop
        found = self._message(channel_id, message_id)
        if isinstance(found, Response):
            return found
        if not emoji or (":" in emoji and not emoji.rsplit(":", 1)[1].isdigit()):
            return _error(400, "Unknown Emoji", 10014)
        with self.lock:
            reactions = found.setdefault("reactions", [])
            name, _, emoji_id = emoji.partition(":")
            mine = next((r for r in reactions if r["emoji"]["name"] == name), None)
            if mine is None:
                reactions.append(
                    {"count": 1, "me": True, "emoji": {"id": emoji_id or None, "name": name}}
                )
        return self._answer(headers, None, 204)

    def list_messages(self, req: Request, channel_id: str) -> Response:
        stop, headers = self._admit(req, "list_messages", channel_id)
        if stop:
            return stop
        anchors = {k: req.arg(k) for k in ("before", "after", "around") if req.arg(k)}
        limit_text = req.arg("limit") or "50"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100 or len(anchors) > 1:
            return _error(400, "Invalid Form Body", 50035)
        if any(not v.isdigit() for v in anchors.values() if v):
            return _error(400, "Invalid Form Body", 50035)
        limit = int(limit_text)
        with self.lock:
            if channel_id not in self.channels:
                return _error(404, "Unknown Channel", 10003)
            ordered = sorted(self.channels[channel_id], key=lambda m: int(m["id"]))
        if "after" in anchors:
            chosen = [m for m in ordered if int(m["id"]) > int(anchors["after"] or 0)][:limit]
        elif "before" in anchors:
            chosen = [m for m in ordered if int(m["id"]) < int(anchors["before"] or 0)][-limit:]
        elif "around" in anchors:
            pivot = int(anchors["around"] or 0)
            older = (
                [m for m in ordered if int(m["id"]) < pivot][-(limit // 2) :] if limit > 1 else []
            )
            newer = [m for m in ordered if int(m["id"]) >= pivot][: limit - len(older)]
            chosen = older + newer
        else:
            chosen = ordered[-limit:]
        newest_first = sorted((dict(m) for m in chosen), key=lambda m: int(m["id"]), reverse=True)
        return self._answer(headers, newest_first)

    def execute_webhook(self, req: Request, webhook_id: str, token: str) -> Response:
        with self.lock:
            hook = self.webhooks.get(webhook_id)
        if hook is None:
            return _error(404, "Unknown Webhook", 10015)
        if hook["token"] != token:
            return _error(401, "Invalid Webhook Token", 50027)
        stop, headers = self._admit(req, "execute_webhook", webhook_id + "/" + token)
        if stop:
            return stop
        body = req.json()
        problem = self._message_problem(body)
        if problem:
            return problem
        if not any(body.get(k) for k in ("content", "embeds", "components", "poll")):
            return _error(400, "Cannot send an empty message", 50006)
        author = {"id": webhook_id, "username": body.get("username") or "Captain Hook", "bot": True}
        message = self._store(hook["channel_id"], body, author)
        message["webhook_id"] = webhook_id
        with self.lock:
            self.counters["created"] += 1
        if (req.arg("wait") or "").lower() == "true":
            return self._answer(headers, message)
        return self._answer(headers, None, 204)
