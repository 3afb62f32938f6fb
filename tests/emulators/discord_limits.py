"""Discord's rate limits in the Discord emulator (docs.discord.com/developers/topics/rate-limits).

Every answer of a route carries ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` (epoch
seconds), ``-Reset-After`` (seconds, never earlier than the window's real reset) and
``-Bucket`` (the same hash for one route whatever its channel; routes in one bucket share its
count, kept per top-level resource: a channel, or a webhook's id and token). Past a route's
limit: ``429`` with ``Retry-After``, ``X-RateLimit-Scope: user`` and ``{"message",
"retry_after", "global": false}``. Past the global limit (per bot): ``429`` with
``X-RateLimit-Global: true`` and ``X-RateLimit-Scope: global``.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from tests.emulators.common import Limiter, Request, Response

__all__ = ["BUCKETS", "DiscordLimits"]

#: The bucket hash each route answers in ``X-RateLimit-Bucket`` (opaque to clients).
BUCKETS = {
    "create_message": "80c17d2f203122d936070c88c8d10f33",
    "edit_message": "be3d5b7ad4c17dc0e5a46f36d3ffa3ea",
    "list_messages": "d7a2a1cc07f3b4d6e3a1a8bb3ae9a3f2",
    "get_message": "d7a2a1cc07f3b4d6e3a1a8bb3ae9a3f2",  # one bucket with the listing
    "add_reaction": "0c8b2b5f4b1f2d9e6a7c3d1e9f8a7b6c",
    "execute_webhook": "e8b3ad0c2a4a4c3c97f5d4e1be4ec8a1",
}


def _error(status: int, message: str, code: int, **extra: Any) -> Response:
    """Discord's error body: ``{"message", "code"}`` (and ``errors`` for a form error)."""
    return Response.json({"message": message, "code": code, **extra}, status)


class DiscordLimits:
    """The rate-limit half of the Discord emulator (a mixin of
    :class:`tests.emulators.discord.Discord`, which holds the limiters and the tokens)."""

    lock: threading.RLock
    bot_tokens: set[str]
    rate_limit_headers: bool
    _limiters: dict[str, Limiter]
    _global: Limiter

    def _headers(self, route: str, remaining: int, reset_after: float) -> dict[str, str]:
        if not self.rate_limit_headers:
            return {}
        after = math.ceil(max(reset_after, 0.001) * 1000) / 1000  # never earlier than the reset
        return {
            "X-RateLimit-Limit": str(self._limiters[BUCKETS[route]].limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + after:.3f}",
            "X-RateLimit-Reset-After": f"{after:.3f}",
            "X-RateLimit-Bucket": BUCKETS[route],
        }

    def _limited(self, route: str, reset_after: float, *, scope: str) -> Response:
        headers = self._headers(route, 0, reset_after)
        headers["Retry-After"] = str(max(1, math.ceil(reset_after)))
        headers["X-RateLimit-Scope"] = scope
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(reset_after, 3),
            "global": False,
        }
        return Response.json(body, 429, **headers)

    @staticmethod
    def _global_limited(reset_after: float) -> Response:
        headers = {
            "Retry-After": str(max(1, math.ceil(reset_after))),
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
        }
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(reset_after, 3),
            "global": True,
        }
        return Response.json(body, 429, **headers)

    def _admit(
        self, req: Request, route: str, resource: str
    ) -> tuple[Response | None, dict[str, str]]:
        """Authenticate (bot routes) and count the request against the global and route limits.

        Returns an answer that ends the request (401, 429) or ``None``, and the headers every
        other answer carries.
        """
        token: str | None = None
        if route != "execute_webhook":
            scheme, _, token = req.headers.get("authorization", "").partition(" ")
            if scheme != "Bot" or token not in self.bot_tokens:
                return _error(401, "401: Unauthorized", 0), {}
        allowed, _, reset = self._global.hit(token or req.origin)
        if not allowed:
            return self._global_limited(reset), {}
        allowed, remaining, reset = self._limiters[BUCKETS[route]].hit(resource)
        if not allowed:
            return self._limited(route, reset, scope="user"), {}
        return None, self._headers(route, remaining, reset)
