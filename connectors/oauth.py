"""OAuth 2.0 on the client side: an app's OAuth settings, and tokens for a connector on its own.

:class:`TokenEndpoint` (:mod:`connectors.grants`) sends the grants (authorisation code, refresh,
client credentials) and translates the token endpoint's failures once; :class:`OAuthClient` is
one connection's OAuth
client (endpoints, identity, scopes) as :meth:`connectors.base.Connector.oauth_client` derives
it; :class:`ClientCredentialsAuthenticator` runs the client-credentials grant for a connector
used on its own (the fleet's tasks keep tokens in the store instead: :mod:`tasks.tokens`).

No error raised here quotes a secret.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.auth import AuthBase

from spark_integrations.connectors import http
from spark_integrations.connectors.grants import TokenEndpoint, check_token_url

__all__ = [
    "GRANT_TYPES",
    "TOKEN_AUTH_METHODS",
    "ClientCredentialsAuthenticator",
    "OAuthClient",
    "TokenEndpoint",
    "check_token_url",
    "renew_margin",
    "token_lifetime",
]

#: How an OAuth connection gets its tokens: the connect flow, or the client-credentials grant.
GRANT_TYPES = ("authorization_code", "client_credentials")
#: How a client authenticates at the token endpoint (RFC 6749 §2.3.1).
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def renew_margin(lifetime: float) -> float:
    """How long before expiry a token is renewed ahead: at most 60 s and 10% of its lifetime
    (CONTRACT.md), so short-lived tokens are not renewed on every call."""
    return min(60.0, 0.1 * lifetime)


def token_lifetime(answer: Mapping[str, Any]) -> float | None:
    """The ``expires_in`` of a token answer in seconds, when it gives a usable one."""
    lifetime = answer.get("expires_in")
    if isinstance(lifetime, str):
        try:
            lifetime = float(lifetime)
        except ValueError:
            return None
    if (
        isinstance(lifetime, int | float)
        and not isinstance(lifetime, bool)
        and math.isfinite(lifetime)
        and lifetime > 0
    ):
        return float(lifetime)
    return None


class ClientCredentialsAuthenticator(AuthBase):
    """OAuth 2.0 client-credentials grant (RFC 6749 §4.4), with its token cached in memory.

    For a connector used on its own; the fleet's tasks keep client-credentials tokens in the
    store instead (:mod:`tasks.tokens`), so the whole fleet shares one. The access token is
    fetched on first use and kept until it will expire within :func:`renew_margin`, or until
    :meth:`invalidate` (called by the caller once after a 401). A lock makes threads sharing
    the authenticator fetch one token, not one each. The request and its errors are
    :class:`TokenEndpoint`'s.

    Attributes:
        issued: how many tokens this authenticator has fetched.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scopes: Sequence[str] | None = None,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.05, 30),
        connector: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the grant (arguments as :class:`TokenEndpoint`'s, plus ``scopes`` to ask
        for and ``clock``, a monotonic clock in seconds replaced by tests)."""
        self.endpoint = TokenEndpoint(
            token_url,
            client_id,
            client_secret,
            auth_method=auth_method,
            session=session,
            timeout=timeout,
            connector=connector,
        )
        self.scopes = list(scopes) if scopes is not None else None
        self.issued = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at: float | None = None

    @property
    def token_url(self) -> str:
        return self.endpoint.token_url

    @property
    def client_id(self) -> str:
        return self.endpoint.client_id

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.access_token()}"
        return r

    def __repr__(self) -> str:
        parts = urlsplit(self.token_url)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return (
            f"{type(self).__name__}(token_url={url!r}, client_id={self.client_id!r}, "
            f"auth_method={self.endpoint.auth_method!r}, scopes={self.scopes!r})"
        )

    def access_token(self) -> str:
        """The cached access token, fetched anew when missing, invalidated or about to expire.

        Raises:
            AuthenticationError: the token endpoint refused the client's credentials.
            RetriableError: the token endpoint failed in a way that may pass.
            FatalError: the token endpoint refused the request for another reason.
        """
        with self._lock:
            if self._token is None or (
                self._renew_at is not None and self._clock() >= self._renew_at
            ):
                started = self._clock()
                answer = self.endpoint.client_credentials(self.scopes)
                lifetime = token_lifetime(answer)
                self._token = str(answer["access_token"])
                # Counted from when the request left.
                self._renew_at = (
                    None if lifetime is None else started + lifetime - renew_margin(lifetime)
                )
                self.issued += 1
            return self._token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token, so the next request fetches a new one.

        Args:
            token: the token the provider refused. When given, the cache is dropped only if it
                still holds that token: threads that all got a 401 with it then cause one fetch.
        """
        with self._lock:
            if token is None or token == self._token:
                self._token = None
                self._renew_at = None


@dataclass(frozen=True)
class OAuthClient:
    """The OAuth 2.0 client of one connection: the provider's endpoints and the app's identity.

    Built by :meth:`connectors.base.Connector.oauth_client` from the connector's declaration,
    overridden by the connection's config; the client secret comes from the connection's secrets.
    """

    connector: str
    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    auth_method: str
    authorize_params: Mapping[str, str]
    grant_type: str
    token_timeout: tuple[float, float]
    #: The provider's own token-endpoint error codes and the RFC 6749 codes they mean.
    error_codes: Mapping[str, str] = field(default_factory=dict)

    def endpoint(self, *, connector: str = "", pooled: bool = True) -> TokenEndpoint:
        """The token endpoint, ready to send grants.

        Args:
            connector: the name in error messages (default: the connector's).
            pooled: send through this process's pooled session; False for a private connection
                per request (a rotating refresh, where a stale keep-alive connection failing
                after the request left would read as a lost answer).
        """
        return TokenEndpoint(
            self.token_url,
            self.client_id,
            self.client_secret,
            auth_method="client_secret_post"
            if self.auth_method == "client_secret_post"
            else "client_secret_basic",
            session=http.http_session() if pooled else None,
            timeout=self.token_timeout,
            connector=connector or self.connector,
            error_codes=self.error_codes,
        )
