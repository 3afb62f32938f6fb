"""OAuth 2.0: authorization codes with PKCE, access tokens, rotating refresh tokens.

Each authorization (a code exchange or a client-credentials grant) starts a token *family*.
Refresh tokens are single-use: a valid one is exchanged for a new access and refresh token of
the same family; presenting a used one again means it leaked, so the whole family is revoked
(RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP §4.14). ``/oauth/*`` is never rate limited or faulted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from hmac import compare_digest
from typing import Literal
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from spark_integrations.sandbox.common import Request, Response, error, json_response, num
from spark_integrations.sandbox.options import SandboxOptions
from spark_integrations.sandbox.state import Stats

__all__ = ["TokenStore", "authorize", "basic_credentials", "bearer_error", "token"]

CODE_TTL = 60.0
DEFAULT_SCOPE = "items:read messages:write"
# Expired access tokens are remembered this long, to say "expired" rather than "unknown".
_FORGET_AFTER = 600.0

AccessCheck = Literal["ok", "expired", "revoked", "unknown"]


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str
    scope: str
    expires: float


@dataclass(slots=True)
class _Access:
    family: int
    expires: float
    revoked: bool = False


@dataclass(slots=True)
class _Refresh:
    family: int
    client_id: str
    scope: str
    used: bool = False
    # The access token issued with it: a refresh while that token still has more than half its
    # life left (not expired, not revoked) counts as early, a client refreshing more than needed.
    access: str = ""


@dataclass(slots=True)
class _Family:
    access: set[str] = field(default_factory=set)
    refresh: set[str] = field(default_factory=set)


class TokenStore:
    """Codes, access tokens, refresh tokens and families; times use :func:`time.monotonic`."""

    def __init__(self, options: SandboxOptions, lock: threading.Lock, stats: Stats) -> None:
        """Empty; ``lock`` is the sandbox's one lock."""
        self.ttl = options.token_ttl
        self._lock = lock
        self.stats = stats
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._families: dict[int, _Family] = {}
        self._next_family = 0
        self._issued_since_sweep = 0

    def new_code(self, code: _Code) -> str:
        """Store an authorization code and return it."""
        value = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[value] = code
            self.stats.incr_locked("authorization_codes")
        return value

    def take_code(self, value: str) -> _Code | None:
        """Remove and return a live code: any redemption attempt uses it up."""
        with self._lock:
            code = self._codes.pop(value, None)
        if code is None or code.expires < time.monotonic():
            return None
        return code

    def issue(
        self, client_id: str, scope: str, refresh: bool, family: int | None = None
    ) -> dict[str, object]:
        """A token response; a new family unless ``family`` is given."""
        with self._lock:
            return self._issue_locked(client_id, scope, refresh, family)

    def _issue_locked(
        self, client_id: str, scope: str, refresh: bool, family: int | None
    ) -> dict[str, object]:
        access = secrets.token_urlsafe(32)
        answer: dict[str, object] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": num(self.ttl),
        }
        if family is None:
            family = self._next_family = self._next_family + 1
            self._families[family] = _Family()
        members = self._families[family]
        self._access[access] = _Access(family, time.monotonic() + self.ttl)
        members.access.add(access)
        if refresh:
            value = secrets.token_urlsafe(32)
            self._refresh[value] = _Refresh(family, client_id, scope, access=access)
            members.refresh.add(value)
            answer["refresh_token"] = value
        answer["scope"] = scope
        self.stats.incr_locked("tokens_issued")
        self._issued_since_sweep += 1
        if self._issued_since_sweep >= 1024:
            self._sweep_locked()
        return answer

    def refresh(self, value: str, client_id: str) -> dict[str, object] | None:
        """Rotate a refresh token; None (and family revoked if it was used) when refused."""
        with self._lock:
            record = self._refresh.get(value)
            if record is None or record.used or record.client_id != client_id:
                self.stats.incr_locked("invalid_grants")
                if record is not None and record.used:
                    self._revoke_family_locked(record.family)
                return None
            record.used = True
            self.stats.incr_locked("token_refreshes")
            issued = self._access.get(record.access)
            if issued and not issued.revoked and issued.expires - time.monotonic() > self.ttl / 2:
                self.stats.incr_locked("early_refreshes")
            # Under the same lock hold: a concurrent reuse cannot revoke the family in between.
            return self._issue_locked(client_id, record.scope, True, record.family)

    def check(self, value: str) -> AccessCheck:
        """Whether ``value`` is a live access token."""
        with self._lock:
            record = self._access.get(value)
        if record is None:
            return "unknown"
        if record.revoked:
            return "revoked"
        return "ok" if record.expires > time.monotonic() else "expired"

    def expire(self, value: str | None) -> int:
        """Make one access token (or all when None) expired now; returns how many."""
        past = time.monotonic() - 1e-3
        with self._lock:
            targets = list(self._access) if value is None else [value]
            count = 0
            for token_value in targets:
                record = self._access.get(token_value)
                if record is not None and record.expires > past:
                    record.expires = past
                    count += 1
        return count

    def _revoke_family_locked(self, family: int) -> None:
        members = self._families.get(family)
        if members is None:
            return
        for value in members.access:
            record = self._access.get(value)
            if record is not None:
                record.revoked = True
        for value in members.refresh:
            self._refresh[value].used = True

    def _sweep_locked(self) -> None:
        """Forget access tokens expired long ago, so a long benchmark does not grow forever."""
        self._issued_since_sweep = 0
        horizon = time.monotonic() - _FORGET_AFTER
        for value in [v for v, r in self._access.items() if r.expires < horizon]:
            record = self._access.pop(value)
            members = self._families.get(record.family)
            if members is not None:
                members.access.discard(value)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header (form-decoded, RFC 6749 §2.3.1)."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (unquote_plus(user), unquote_plus(password)) if sep else None


def _page(status: int, title: str, text: str) -> Response:
    body = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{html.escape(text)}</p>"
    return Response(status, body.encode(), content_type="text/html; charset=utf-8")


def _redirect(uri: str, params: dict[str, str]) -> Response:
    joiner = "&" if urlsplit(uri).query else "?"
    return Response(302, b"", headers=[("Location", uri + joiner + urlencode(params))])


def authorize(store: TokenStore, options: SandboxOptions, req: Request) -> Response:
    """``GET /oauth/authorize``: approve at once and redirect back with a code."""
    q = req.query
    client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
    if client_id != options.client_id:
        return _page(400, "Unknown client", f"client_id {client_id!r} is not registered.")
    parts = urlsplit(redirect_uri)
    if not redirect_uri or parts.scheme not in ("http", "https") or not parts.netloc:
        return _page(400, "Bad redirect_uri", "redirect_uri must be an absolute http(s) URL.")
    state = {"state": q["state"]} if "state" in q else {}
    if q.get("response_type") != "code":
        return _redirect(redirect_uri, {"error": "unsupported_response_type", **state})
    challenge = q.get("code_challenge")
    method = q.get("code_challenge_method", "plain")
    if challenge is not None and method not in ("S256", "plain"):
        return _redirect(
            redirect_uri,
            {"error": "invalid_request", "error_description": "unsupported PKCE method", **state},
        )
    code = _Code(
        client_id,
        redirect_uri,
        challenge,
        method,
        q.get("scope", DEFAULT_SCOPE),
        time.monotonic() + CODE_TTL,
    )
    return _redirect(redirect_uri, {"code": store.new_code(code), **state})


def _oauth_error(status: int, code: str, description: str) -> Response:
    response = json_response(status, {"error": code, "error_description": description})
    response.headers.append(("Cache-Control", "no-store"))
    if status == 401:
        response.headers.append(("WWW-Authenticate", 'Basic realm="sandbox"'))
    return response


def _pkce_ok(code: _Code, verifier: str | None) -> bool:
    if code.challenge is None:
        return True
    if not verifier:
        return False
    if code.method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return compare_digest(expected, code.challenge)
    return compare_digest(verifier, code.challenge)


def token(store: TokenStore, options: SandboxOptions, req: Request) -> Response:
    """``POST /oauth/token``: grants authorization_code, refresh_token and client_credentials."""
    try:
        form = dict(parse_qsl(req.body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the body must be form-encoded UTF-8")
    basic = basic_credentials(req.headers.get("Authorization"))
    client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
    if not (
        compare_digest(client_id.encode(), options.client_id.encode())
        and compare_digest(secret.encode(), options.client_secret.encode())
    ):
        return _oauth_error(401, "invalid_client", "unknown client or wrong client secret")
    grant = form.get("grant_type", "")
    if grant == "authorization_code":
        code = store.take_code(form.get("code", ""))
        if code is None or code.client_id != client_id:
            store.stats.incr("invalid_grants")
            return _oauth_error(400, "invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri", "") != code.redirect_uri:
            store.stats.incr("invalid_grants")
            return _oauth_error(400, "invalid_grant", "redirect_uri differs from the authorize one")
        if not _pkce_ok(code, form.get("code_verifier")):
            store.stats.incr("invalid_grants")
            return _oauth_error(400, "invalid_grant", "code_verifier does not match the challenge")
        answer = store.issue(client_id, code.scope, refresh=True)
    elif grant == "refresh_token":
        refreshed = store.refresh(form.get("refresh_token", ""), client_id)
        if refreshed is None:
            return _oauth_error(400, "invalid_grant", "unknown, used or revoked refresh token")
        answer = refreshed
    elif grant == "client_credentials":
        answer = store.issue(client_id, form.get("scope", DEFAULT_SCOPE), refresh=False)
        store.stats.incr("client_credentials_grants")
    else:
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported")
    return json_response(200, answer, [("Cache-Control", "no-store"), ("Pragma", "no-cache")])


def bearer_error(description: str) -> Response:
    """The 401 of the API for a missing, unknown, expired or revoked credential."""
    response = error(401, "invalid_token", description, error_description=description)
    response.headers.append(("WWW-Authenticate", 'Bearer error="invalid_token"'))
    return response
