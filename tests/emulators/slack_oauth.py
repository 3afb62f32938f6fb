"""Slack's OAuth v2 in the Slack emulator: the consent page and ``oauth.v2.access`` with token
rotation (docs.slack.dev/authentication/using-token-rotation).

Exchanging a code, or a refresh token (``grant_type=refresh_token``), hands out a rotated pair:
an access token ``xoxe.xoxb-1-N`` that expires after ``expires_in`` seconds (Slack: 43,200)
and a refresh token ``xoxe-1-N`` that works once. The client authenticates with HTTP Basic (as
Slack recommends) or ``client_id``/``client_secret`` arguments. Errors are HTTP 200
``{"ok": false, "error": ...}``: ``invalid_client_id``, ``bad_client_secret``, ``invalid_code``,
``invalid_refresh_token``, ``invalid_grant_type``.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from typing import Any
from urllib.parse import urlencode

from tests.emulators.common import Request, Response

__all__ = ["SlackOAuth"]


class SlackOAuth:
    """The OAuth half of the Slack emulator (a mixin of :class:`tests.emulators.slack.Slack`,
    which holds the state: ``tokens``, ``refresh_tokens``, ``clients``, ``codes``)."""

    lock: threading.RLock
    tokens: dict[str, float | None]
    refresh_tokens: dict[str, str]
    clients: dict[str, str]
    codes: dict[str, str]
    token_lifetime: int
    _ids: itertools.count[int]

    def add_client(self, client_id: str, client_secret: str) -> str:
        """Register an app; returns an authorisation code for it (as the consent page would)."""
        with self.lock:
            self.clients[client_id] = client_secret
        return self.new_code(client_id)

    def new_code(self, client_id: str) -> str:
        """A fresh authorisation code of ``client_id``."""
        with self.lock:
            code = f"{next(self._ids)}.{client_id}.code"
            self.codes[code] = client_id
            return code

    def expire_tokens(self) -> None:
        """Make every rotated access token expired now (the next call gets ``token_expired``)."""
        with self.lock:
            for token, expiry in self.tokens.items():
                if expiry is not None:
                    self.tokens[token] = time.time() - 1

    def m_oauth_v2_access(self, req: Request, args: dict[str, Any]) -> Response:
        client_id, secret = args.get("client_id"), args.get("client_secret")
        scheme, _, encoded = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return Response.json({"ok": False, "error": "invalid_client_id"})
        with self.lock:
            if client_id not in self.clients:
                return Response.json({"ok": False, "error": "invalid_client_id"})
            if self.clients[client_id] != secret:
                return Response.json({"ok": False, "error": "bad_client_secret"})
            grant = args.get("grant_type") or "authorization_code"
            if grant == "authorization_code":
                if self.codes.pop(str(args.get("code")), None) != client_id:
                    return Response.json({"ok": False, "error": "invalid_code"})
            elif grant == "refresh_token":
                if self.refresh_tokens.pop(str(args.get("refresh_token")), None) != client_id:
                    return Response.json({"ok": False, "error": "invalid_refresh_token"})
            else:
                return Response.json({"ok": False, "error": "invalid_grant_type"})
            n = next(self._ids)
            access, refresh = f"xoxe.xoxb-1-{n}", f"xoxe-1-{n}"
            self.tokens[access] = time.time() + self.token_lifetime
            self.refresh_tokens[refresh] = str(client_id)
        return Response.json(
            {
                "ok": True,
                "access_token": access,
                "token_type": "bot",
                "scope": "chat:write,channels:history,channels:read,users:read,reactions:write",
                "bot_user_id": "U0KRQLJ9H",
                "app_id": "A0KRD7HC3",
                "expires_in": self.token_lifetime,
                "refresh_token": refresh,
                "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
                "enterprise": None,
                "is_enterprise_install": False,
            }
        )

    def authorize(self, req: Request) -> Response:
        """The consent page, consenting at once: redirect to ``redirect_uri`` with a code."""
        client_id, redirect = req.arg("client_id"), req.arg("redirect_uri")
        with self.lock:
            known = client_id in self.clients
        if not known or not redirect:
            return Response(
                400, "invalid_client_id or redirect_uri", {"Content-Type": "text/plain"}
            )
        query = {"code": self.new_code(str(client_id)), "state": req.arg("state") or ""}
        sep = "&" if "?" in redirect else "?"
        return Response(302, b"", {"Location": redirect + sep + urlencode(query)})
