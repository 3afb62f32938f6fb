"""A loopback emulator of Slack's Web API: the methods the Slack connector uses.

Written from Slack's documentation (docs.slack.dev, "Web API", the method pages and "Rate
limits"), sharing no code with ``connectors/``:

- Every method lives at ``/api/METHOD`` and accepts GET or POST, its arguments in the query
  string, a form body or (POST) a JSON body; the token comes as ``Authorization: Bearer`` or as a
  ``token`` argument.
- Errors are HTTP 200 ``{"ok": false, "error": CODE}``: ``not_authed`` (no token),
  ``invalid_auth`` (unknown token), ``token_expired`` (a rotated token past its expiry),
  ``channel_not_found``, ``no_text``, ``msg_too_long``, ``message_not_found``,
  ``already_reacted``, ``invalid_cursor``...
- Rate limits are per method, per workspace (token), in tiers (Tier 2: 20+/min, Tier 3: 50+/min,
  Tier 4: 100+/min; ``chat.postMessage``: about one message per second per channel). Past the
  limit: HTTP 429 with ``Retry-After`` (seconds) and ``{"ok": false, "error": "ratelimited"}``.
  Slack sends no rate-limit headers on successful answers.
- Cursor pagination: ``cursor`` and ``limit`` in, ``response_metadata.next_cursor`` out (empty
  on the last page). ``conversations.history`` returns the most recent messages first, only those
  after ``oldest`` (and at ``oldest`` with ``inclusive``), before ``latest``; ``has_more``.
- OAuth v2 with token rotation: ``oauth.v2.access`` exchanges a code, or a refresh token
  (``grant_type=refresh_token``); rotated access tokens (``xoxe.xoxb-``) expire after
  ``expires_in`` seconds (Slack: 43,200) and each refresh token works once.
- ``auth.test`` says who a token is: its team and user, and ``bot_id`` for a bot token (the
  ``bot_id`` every message ``chat.postMessage`` stores carries).

For tests of lost answers (:class:`~tests.emulators.lost_answers.LostAnswers`),
``lose_answers("chat.postMessage")`` lets a post be stored and then loses its answer: the
connection closes without one, at once or once ``release()`` lets a held answer go (a worker
killed meanwhile never gets it). The common ``drop`` injection loses a request before it is
served (nothing stored).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from tests.emulators.common import Emulator, Limiter, Request, Response, Route
from tests.emulators.lost_answers import LostAnswers
from tests.emulators.slack_oauth import SlackOAuth

__all__ = ["BOT_ID", "TIERS", "Slack"]

#: Requests per minute of each tier Slack documents (the lower bound of each range).
TIERS: dict[str, int] = {"tier1": 1, "tier2": 20, "tier3": 50, "tier4": 100}
#: Each emulated method's tier (from its page on docs.slack.dev); "special": see ``post_rate``.
METHOD_TIERS = {
    "chat.postMessage": "special",
    "chat.update": "tier3",
    "reactions.add": "tier3",
    "conversations.list": "tier2",
    "users.list": "tier2",
    "conversations.history": "tier3",
    "oauth.v2.access": "tier4",
    "auth.test": "tier4",  # "Special": hundreds of requests per minute
}
#: Who the bot tokens are (auth.test), and the bot_id stamped on what chat.postMessage stores.
BOT_ID, BOT_USER = "B123ABC456", "U0KRQLJ9H"

#: Errors an injection may name by class; any other name is sent as a Slack error code.
ERROR_CLASSES = {
    "retry": "service_unavailable",
    "unknown": "internal_error",
    "reauth": "invalid_auth",
    "fatal": "channel_not_found",
}
POST_TEXT_LIMIT = 40_000  # chat.postMessage truncates/refuses past 40,000 characters
UPDATE_TEXT_LIMIT = 4_000  # chat.update: "The text field cannot exceed 4,000 characters"


def _ts_key(ts: str) -> Decimal:
    return Decimal(ts)


def _cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _uncursor(kind: str, cursor: str) -> str | None:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    prefix, _, value = text.partition(":")
    return value if prefix == kind and value else None


class Slack(LostAnswers, SlackOAuth, Emulator):
    """Slack's Web API under ``/api`` and its OAuth v2 authorisation page."""

    name = "slack"

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = ("xoxb-test-token",),
        per_minute: dict[str, int] | None = None,
        window: float = 60.0,
        post_rate: tuple[int, float] = (2, 1.0),
        token_lifetime: int = 43_200,
        retry_after: int = 1,
    ) -> None:
        """Args:
        tokens: bot tokens that never expire (a plain bot token).
        per_minute: requests per ``window`` of each tier (default: :data:`TIERS`), or of one
            method by its name.
        window: seconds each tier's count runs over (60 at Slack; tests may shorten it).
        post_rate: ``chat.postMessage`` messages per seconds, per channel (Slack: "1 per
            second", "short bursts >1 allowed").
        token_lifetime: ``expires_in`` of rotated access tokens.
        retry_after: ``Retry-After`` of an injected rate limit.
        """
        self._static_tokens = set(tokens)
        self._limits = {**TIERS, **(per_minute or {})}
        self._window = window
        self._post_rate = post_rate
        self.token_lifetime = token_lifetime
        self.retry_after = retry_after
        self._limiters: dict[str, Limiter] = {}
        super().__init__()
        self.reset_state()

    # -- data ------------------------------------------------------------------------------

    def reset_state(self) -> None:
        """The documented example workspace: #general and #random, Egon and Glinda."""
        with self.lock:
            self.tokens: dict[str, float | None] = dict.fromkeys(self._static_tokens)
            self.refresh_tokens: dict[str, str] = {}  # refresh token -> client_id
            self.clients: dict[str, str] = {}  # client_id -> client_secret
            self.codes: dict[str, str] = {}  # code -> client_id
            self.channels: dict[str, dict[str, Any]] = {}
            self.messages: dict[str, list[dict[str, Any]]] = {}
            self.users: list[dict[str, Any]] = []
            self._ids = itertools.count(1)
            self._last_ts = Decimal(0)
            self._limiters = {}
        self.add_channel("C012AB3CD", "general", is_general=True)
        self.add_channel("C061EG9T2", "random")
        self.add_user("W012A3CDE", "spengler", "Egon Spengler")
        self.add_user("W07QCRPA4", "glinda", "Glinda Southgood")

    def add_channel(self, channel_id: str, name: str, *, is_general: bool = False) -> None:
        """Seed a public channel the bot is a member of."""
        with self.lock:
            self.channels[channel_id] = {
                "id": channel_id,
                "name": name,
                "is_channel": True,
                "is_group": False,
                "is_im": False,
                "created": 1449252889,
                "creator": "U012A3CDE",
                "is_archived": False,
                "is_general": is_general,
                "name_normalized": name,
                "is_member": True,
                "is_private": False,
                "is_mpim": False,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
                "num_members": 4,
            }
            self.messages.setdefault(channel_id, [])

    def add_user(self, user_id: str, name: str, real_name: str) -> None:
        """Seed a workspace member."""
        with self.lock:
            self.users.append(
                {
                    "id": user_id,
                    "team_id": "T012AB3C4",
                    "name": name,
                    "deleted": False,
                    "real_name": real_name,
                    "tz": "America/Los_Angeles",
                    "profile": {"real_name": real_name, "display_name": name},
                    "is_admin": False,
                    "is_bot": False,
                    "updated": 1502138686,
                }
            )

    def seed_messages(self, channel: str, count: int, *, user: str = "U123ABC456") -> list[str]:
        """Post ``count`` messages to ``channel``; returns their ``ts``, oldest first."""
        return [self._append(channel, {"user": user, "text": f"message {i}"}) for i in range(count)]

    def _append(self, channel: str, fields: dict[str, Any]) -> str:
        with self.lock:
            ts = max(Decimal(f"{time.time():.6f}"), self._last_ts + Decimal("0.000001"))
            self._last_ts = ts
            text_ts = f"{ts:.6f}"
            self.messages[channel].append({"type": "message", **fields, "ts": text_ts})
            return text_ts

    # -- plumbing --------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("GET", r"/oauth/v2/authorize", self.authorize, "oauth.v2.authorize"),
            *(
                Route(method, rf"/api/{name}", self._method(name), name)
                for name in METHOD_TIERS
                for method in ("GET", "POST")
            ),
        ]

    def not_found(self, req: Request) -> Response:
        return Response.json({"ok": False, "error": "unknown_method"}, 404)

    def injected(self, kind: str, req: Request) -> Response:
        if kind == "rate_limited":
            return self._ratelimited(self.retry_after)
        if kind == "http_503":
            return Response.json({"ok": False, "error": "service_unavailable"}, 503)
        return Response.json({"ok": False, "error": ERROR_CLASSES.get(kind, kind)})

    @staticmethod
    def _ratelimited(seconds: float) -> Response:
        wait = str(max(1, int(seconds + 0.999)))
        return Response.json({"ok": False, "error": "ratelimited"}, 429, **{"Retry-After": wait})

    def _limiter(self, key: str, limit: int, window: float) -> Limiter:
        with self.lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = Limiter(limit, window)
            return limiter

    def _method(self, name: str) -> Any:
        handler = getattr(self, "m_" + name.replace(".", "_"))

        def serve(req: Request) -> Response:
            args = self._args(req)
            if name == "oauth.v2.access":
                return handler(req, args)  # type: ignore[no-any-return]
            token = req.bearer() or args.pop("token", None)
            problem = self._token_problem(token)
            if problem:
                return Response.json({"ok": False, "error": problem})
            tier = METHOD_TIERS[name]
            per = self._limits.get(name, self._limits.get(tier, 0))
            if tier != "special" and per:
                allowed, _, reset = self._limiter(f"{name}:{token}", per, self._window).hit()
                if not allowed:
                    return self._ratelimited(reset)
            return handler(args)  # type: ignore[no-any-return]

        return serve

    @staticmethod
    def _args(req: Request) -> dict[str, Any]:
        args: dict[str, Any] = {k: v[0] for k, v in req.query.items()}
        ctype = req.headers.get("content-type", "")
        if req.method == "POST" and "json" in ctype:
            body = req.json()
            if isinstance(body, dict):
                args.update(body)
        elif req.method == "POST" and req.body:
            parsed = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
            args.update({k: v[0] for k, v in parsed.items()})
        return args

    def _token_problem(self, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        with self.lock:
            if token not in self.tokens:
                return "invalid_auth"
            expiry = self.tokens[token]
        return "token_expired" if expiry is not None and time.time() >= expiry else None

    def _page(self, items: list[dict[str, Any]], args: dict[str, Any], kind: str) -> Any:
        """One page of a cursor-paginated list: (items, next_cursor) or an error code."""
        try:
            limit = int(args.get("limit") or 100)
        except ValueError:
            return "invalid_limit"
        limit = min(max(limit, 1), 1000)
        start = 0
        if args.get("cursor"):
            found = _uncursor(kind, str(args["cursor"]))
            if found is None or not found.isdigit():
                return "invalid_cursor"
            start = int(found)
        chunk = items[start : start + limit]
        more = start + limit < len(items)
        return chunk, _cursor(kind, str(start + limit)) if more else ""

    # -- methods ---------------------------------------------------------------------------

    def m_chat_postMessage(self, args: dict[str, Any]) -> Response:
        channel = str(args.get("channel") or "")
        if channel not in self.channels:
            return Response.json({"ok": False, "error": "channel_not_found"})
        text = args.get("text")
        if not text and not args.get("blocks") and not args.get("attachments"):
            return Response.json({"ok": False, "error": "no_text"})
        if isinstance(text, str) and len(text) > POST_TEXT_LIMIT:
            return Response.json({"ok": False, "error": "msg_too_long"})
        allowed, _, reset = self._limiter(
            "chat.postMessage", self._post_rate[0], self._post_rate[1]
        ).hit(channel)
        if not allowed:
            return self._ratelimited(reset)
        fields: dict[str, Any] = {"text": text or "", "bot_id": BOT_ID}
        fields.update({k: args[k] for k in ("thread_ts", "blocks", "attachments") if k in args})
        ts = self._append(channel, {**fields, "subtype": "bot_message", "username": "ecto1"})
        with self.lock:
            self.counters["created"] += 1
            message = dict(self.messages[channel][-1])
        return Response.json({"ok": True, "channel": channel, "ts": ts, "message": message})

    def m_chat_update(self, args: dict[str, Any]) -> Response:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        if channel not in self.channels:
            return Response.json({"ok": False, "error": "channel_not_found"})
        text = args.get("text")
        if isinstance(text, str) and len(text) > UPDATE_TEXT_LIMIT:
            return Response.json({"ok": False, "error": "msg_too_long"})
        with self.lock:
            message = next((m for m in self.messages[channel] if m["ts"] == ts), None)
            if message is None:
                return Response.json({"ok": False, "error": "message_not_found"})
            if not message.get("bot_id"):
                return Response.json({"ok": False, "error": "cant_update_message"})
            if text is not None:
                message["text"] = text
            message["edited"] = {"user": "U0KRQLJ9H", "ts": f"{time.time():.6f}"}
            body = {"text": message["text"], "user": "U0KRQLJ9H"}
        return Response.json(
            {"ok": True, "channel": channel, "ts": ts, "text": body["text"], "message": body}
        )

    def m_reactions_add(self, args: dict[str, Any]) -> Response:
        channel, ts = str(args.get("channel") or ""), str(args.get("timestamp") or "")
        name = str(args.get("name") or "")
        if channel not in self.channels:
            return Response.json({"ok": False, "error": "channel_not_found"})
        if not name:
            return Response.json({"ok": False, "error": "invalid_name"})
        with self.lock:
            message = next((m for m in self.messages[channel] if m["ts"] == ts), None)
            if message is None:
                return Response.json({"ok": False, "error": "message_not_found"})
            reactions = message.setdefault("reactions", [])
            for reaction in reactions:
                if reaction["name"] == name:
                    return Response.json({"ok": False, "error": "already_reacted"})
            reactions.append({"name": name, "users": ["U0KRQLJ9H"], "count": 1})
        return Response.json({"ok": True})

    def m_auth_test(self, args: dict[str, Any]) -> Response:
        return Response.json(
            {
                "ok": True,
                "url": "https://ghostbusters.slack.com/",
                "team": "Ghostbusters",
                "user": "ecto1",
                "team_id": "T012AB3C4",
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        )

    def m_conversations_list(self, args: dict[str, Any]) -> Response:
        with self.lock:
            channels = [dict(c) for c in self.channels.values()]
        if str(args.get("exclude_archived", "")).lower() in ("true", "1"):
            channels = [c for c in channels if not c["is_archived"]]
        page = self._page(channels, args, "team")
        if isinstance(page, str):
            return Response.json({"ok": False, "error": page})
        chunk, cursor = page
        return Response.json(
            {"ok": True, "channels": chunk, "response_metadata": {"next_cursor": cursor}}
        )

    def m_users_list(self, args: dict[str, Any]) -> Response:
        with self.lock:
            users = [dict(u) for u in self.users]
        page = self._page(users, args, "user")
        if isinstance(page, str):
            return Response.json({"ok": False, "error": page})
        chunk, cursor = page
        return Response.json(
            {
                "ok": True,
                "members": chunk,
                "cache_ts": int(time.time()),
                "response_metadata": {"next_cursor": cursor},
            }
        )

    def m_conversations_history(self, args: dict[str, Any]) -> Response:
        channel = str(args.get("channel") or "")
        if channel not in self.channels:
            return Response.json({"ok": False, "error": "channel_not_found"})
        inclusive = str(args.get("inclusive", "")).lower() in ("true", "1")
        try:
            oldest = Decimal(str(args.get("oldest") or "0"))
        except InvalidOperation:
            return Response.json({"ok": False, "error": "invalid_ts_oldest"})
        try:
            latest = Decimal(str(args["latest"])) if args.get("latest") else None
        except InvalidOperation:
            return Response.json({"ok": False, "error": "invalid_ts_latest"})
        try:
            limit = min(max(int(args.get("limit") or 100), 1), 999)
        except ValueError:
            return Response.json({"ok": False, "error": "invalid_limit"})
        below: Decimal | None = None  # a cursor continues strictly below the last ts sent
        if args.get("cursor"):
            found = _uncursor("next_ts", str(args["cursor"]))
            try:
                below = Decimal(found) if found else None
            except InvalidOperation:
                below = None
            if below is None:
                return Response.json({"ok": False, "error": "invalid_cursor"})

        def keep(message: dict[str, Any]) -> bool:
            ts = _ts_key(message["ts"])
            if ts < oldest or (ts == oldest and not inclusive):
                return False
            if latest is not None and (ts > latest or (ts == latest and not inclusive)):
                return False
            return below is None or ts < below

        with self.lock:
            matching = sorted(
                (dict(m) for m in self.messages[channel] if keep(m)),
                key=lambda m: _ts_key(m["ts"]),
                reverse=True,  # "The most recent messages in the time range are returned first."
            )
        chunk, more = matching[:limit], len(matching) > limit
        body: dict[str, Any] = {"ok": True, "messages": chunk, "has_more": more, "pin_count": 0}
        if more:
            body["response_metadata"] = {"next_cursor": _cursor("next_ts", chunk[-1]["ts"])}
        return Response.json(body)

    def posted(self, channel: str) -> list[dict[str, Any]]:
        """The messages of ``channel``, oldest first (for assertions)."""
        with self.lock:
            return json.loads(json.dumps(self.messages.get(channel, [])))  # type: ignore[no-any-return]
