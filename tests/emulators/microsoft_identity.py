"""The Microsoft identity platform's OAuth 2.0 endpoints, as the Teams emulator serves them.

From Microsoft's documentation ("Microsoft identity platform and OAuth 2.0 authorization code
flow", "... client credentials flow"):

- ``GET /{tenant}/oauth2/v2.0/authorize``: the user signs in and consents; here consent is
  automatic and the answer is a redirect to ``redirect_uri?code=...&state=...``.
- ``POST /{tenant}/oauth2/v2.0/token`` (form-encoded): grants ``authorization_code``,
  ``refresh_token`` and ``client_credentials``; the client authenticates with ``client_secret``
  in the body or HTTP Basic (both documented). A refresh token is only issued when the scopes
  held ``offline_access``; each refresh returns a new one ("replace the old refresh token");
  Microsoft does not revoke the old one, unless this emulator is told to
  (``revoke_used_refresh_tokens``) so tests can prove the rotated token is the one kept.
- Client credentials need a tenant-specific endpoint and a ``/.default`` scope.
- Errors: ``{"error", "error_description": "AADSTS...", "error_codes", "timestamp",
  "trace_id", "correlation_id"}``, 400 (401 for ``invalid_client``).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

from tests.emulators.common import Request, Response

__all__ = ["Grant", "IdentityPlatform"]

# The tenants every multi-tenant app may use in the path (documented "Endpoints").
GENERIC_TENANTS = ("common", "organizations", "consumers")


@dataclass
class Grant:
    """What an access or refresh token stands for."""

    client_id: str
    tenant: str
    scopes: tuple[str, ...]
    app_only: bool  # client credentials: no signed-in user
    expires_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class IdentityPlatform:
    """Clients, codes and tokens of the emulated login.microsoftonline.com."""

    def __init__(self, *, tenant_id: str, token_lifetime: int = 3599) -> None:
        self.tenant_id = tenant_id
        self.tenant_domains = {tenant_id, "contoso.onmicrosoft.com"}
        self.token_lifetime = token_lifetime
        self.revoke_used_refresh_tokens = False
        self.clients: dict[str, str] = {}  # client_id -> client_secret
        self.redirect_uris: dict[str, set[str]] = {}
        self.codes: dict[str, tuple[Grant, str]] = {}  # code -> (grant, redirect_uri)
        self.access: dict[str, Grant] = {}
        self.refresh: dict[str, Grant] = {}
        self.lock = threading.Lock()
        self.issued = 0

    # -- set-up and inspection by tests -----------------------------------------------

    def register_client(self, client_id: str, secret: str, redirect_uri: str | None = None) -> None:
        """An app registration with a client secret (and a redirect URI for the code flow)."""
        with self.lock:
            self.clients[client_id] = secret
            if redirect_uri:
                self.redirect_uris.setdefault(client_id, set()).add(redirect_uri)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (the next call answers 401)."""
        with self.lock:
            for grant in self.access.values():
                grant.expires_at = 0.0

    def grant_for(self, token: str | None) -> Grant | None:
        """The grant of a valid (known, unexpired) access token."""
        if not token:
            return None
        with self.lock:
            grant = self.access.get(token)
            if grant is None or grant.expires_at <= time.time():
                return None
            return grant

    # -- endpoints ----------------------------------------------------------------------

    def authorize(self, req: Request, tenant: str) -> Response:
        """The authorisation request; consent is automatic: redirect with a code."""
        client_id = req.arg("client_id") or ""
        redirect_uri = req.arg("redirect_uri") or ""
        if client_id not in self.clients:
            return _html_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in "
                f"the directory '{tenant}'.",
            )
        allowed = self.redirect_uris.get(client_id)
        if not redirect_uri or (allowed and redirect_uri not in allowed):
            return _html_error(
                400,
                "invalid_request",
                "AADSTS50011: The redirect URI specified in the request does not match the "
                "redirect URIs configured for the application.",
            )
        if req.arg("response_type") != "code":
            return _redirect(
                redirect_uri, error="unsupported_response_type", state=req.arg("state")
            )
        scopes = tuple((req.arg("scope") or "").split())
        code = "OAAABAAAAiL9Kn2Z27Uu" + secrets.token_urlsafe(24)
        grant = Grant(client_id, tenant, scopes, app_only=False)
        with self.lock:
            self.codes[code] = (grant, redirect_uri)
        return _redirect(redirect_uri, code=code, state=req.arg("state"))

    def token(self, req: Request, tenant: str) -> Response:
        """The token endpoint: authorization_code, refresh_token, client_credentials."""
        form = req.form()
        client_id, secret = self._client_auth(req, form)
        if tenant not in GENERIC_TENANTS and tenant not in self.tenant_domains:
            return token_error(
                400,
                "invalid_request",
                90002,
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the "
                "correct tenant ID and are signing into the correct cloud.",
            )
        if client_id not in self.clients:
            return token_error(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{client_id}' was not found in "
                f"the directory '{tenant}'.",
            )
        if not secret or not secrets.compare_digest(secret, self.clients[client_id]):
            return token_error(
                401,
                "invalid_client",
                7000215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent "
                "in the request is the client secret value, not the client secret ID.",
            )
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            return self._client_credentials(form, client_id, tenant)
        if grant_type == "authorization_code":
            return self._authorization_code(form, client_id)
        if grant_type == "refresh_token":
            return self._refresh(form, client_id)
        return token_error(
            400,
            "unsupported_grant_type",
            70003,
            f"AADSTS70003: The app requested an unsupported grant type '{grant_type}'.",
        )

    # -- grants ----------------------------------------------------------------------------

    def _client_credentials(self, form: dict[str, str], client_id: str, tenant: str) -> Response:
        if tenant in GENERIC_TENANTS:
            return token_error(
                400,
                "invalid_request",
                900023,
                f"AADSTS900023: Specified tenant identifier '{tenant}' is not valid for the "
                "client credentials flow: use the tenant ID or a domain name.",
            )
        scopes = tuple(form.get("scope", "").split())
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return token_error(
                400,
                "invalid_scope",
                70011,
                "AADSTS70011: The provided value for the input parameter 'scope' is not valid. "
                f"The scope {' '.join(scopes)} is not valid.",
            )
        grant = Grant(client_id, tenant, scopes, app_only=True)
        return Response.json(self._issue(grant, with_refresh=False))

    def _authorization_code(self, form: dict[str, str], client_id: str) -> Response:
        with self.lock:
            entry = self.codes.pop(form.get("code", ""), None)
        if entry is None or entry[0].client_id != client_id:
            return token_error(
                400,
                "invalid_grant",
                70008,
                "AADSTS70008: The provided authorization code or refresh token has expired due "
                "to inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        grant, redirect_uri = entry
        if form.get("redirect_uri") != redirect_uri:
            return token_error(
                400,
                "invalid_grant",
                500112,
                "AADSTS500112: The reply address does not match the reply address provided "
                "when requesting the authorization code.",
            )
        return Response.json(self._issue(grant, with_refresh="offline_access" in grant.scopes))

    def _refresh(self, form: dict[str, str], client_id: str) -> Response:
        token = form.get("refresh_token", "")
        with self.lock:
            grant = self.refresh.get(token)
            if grant is not None and self.revoke_used_refresh_tokens:
                del self.refresh[token]
        if grant is None or grant.client_id != client_id:
            return token_error(
                400,
                "invalid_grant",
                70008,
                "AADSTS70008: The provided authorization code or refresh token has expired due "
                "to inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        fresh = Grant(grant.client_id, grant.tenant, grant.scopes, app_only=False)
        return Response.json(self._issue(fresh, with_refresh=True))

    def _issue(self, grant: Grant, *, with_refresh: bool) -> dict[str, Any]:
        access = "eyJ0eXAiOiJKV1QiLCJub25jZSI6." + secrets.token_urlsafe(32)
        grant.expires_at = time.time() + self.token_lifetime
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(s for s in grant.scopes if s != "offline_access"),
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": access,
        }
        with self.lock:
            self.access[access] = grant
            self.issued += 1
            if with_refresh:
                refresh = "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4" + secrets.token_urlsafe(24)
                self.refresh[refresh] = grant
                body["refresh_token"] = refresh
        return body

    @staticmethod
    def _client_auth(req: Request, form: dict[str, str]) -> tuple[str, str]:
        scheme, _, value = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and value:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return "", ""
            return unquote_plus(user), unquote_plus(password)
        return form.get("client_id", ""), form.get("client_secret", "")


def token_error(status: int, error: str, code: int, description: str) -> Response:
    """The identity platform's documented error body."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    return Response.json(
        {
            "error": error,
            "error_description": f"{description}\r\nTrace ID: {trace}\r\n"
            f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
        },
        status,
    )


def _redirect(uri: str, **params: str | None) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if "?" in uri else "?"
    return Response(302, b"", {"Location": f"{uri}{separator}{query}"})


def _html_error(status: int, error: str, description: str) -> Response:
    # The sign-in page shows errors it cannot redirect (unknown client, bad redirect URI).
    body = f"<html><body><h1>{error}</h1><p>{description}</p></body></html>"
    return Response(status, body, {"Content-Type": "text/html; charset=utf-8"})
