"""GitHub's one Python hook: authenticating as a GitHub App installation (auth kind ``jwt_app``).

A manifest cannot say this: GitHub Apps prove themselves with a JWT signed by the app's private
key (RS256, ``iss`` the app id, at most 10 minutes long), which is not sent with API requests
but exchanged at ``POST /app/installations/{installation_id}/access_tokens`` for an
installation token that expires an hour later (``expires_at``). :class:`InstallationToken`
signs the JWT (:class:`~connectors.auth.JWTAuthenticator`), exchanges it, keeps the token until
shortly before it expires (:func:`~connectors.oauth.renew_margin`), and drops it after a 401 so
the request path's one re-authentication obtains a new one. Everything else about GitHub
(tokens, OAuth, streams, actions, limits, errors) is data: ``connectors/manifests/github.yaml``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from requests.auth import AuthBase

from spark_integrations.connectors import http
from spark_integrations.connectors.auth import JWTAuthenticator
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.oauth import renew_margin
from spark_integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    FatalError,
    ProviderError,
    RateLimitedError,
    RetriableError,
)

__all__ = ["GitHubAppHooks", "InstallationToken"]

#: An installation token's life when GitHub's answer does not say (it says an hour).
DEFAULT_LIFETIME = 3000.0


class InstallationToken(AuthBase):
    """A GitHub App installation token, obtained with the app's JWT and renewed before expiry."""

    def __init__(
        self,
        app_jwt: JWTAuthenticator,
        token_url: str,
        *,
        session: requests.Session,
        timeout: Any,
        connector: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Exchange ``app_jwt``'s tokens at ``token_url`` for installation tokens."""
        self._jwt = app_jwt
        self._url = token_url
        self._session = session
        self._timeout = timeout
        self._connector = connector
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.obtained = 0

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token()}"
        return r

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer={self._jwt.issuer!r})"

    def token(self) -> str:
        """The installation token in hand, or a new one when it is near its expiry."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._token, lifetime = self._exchange()
                self._renew_at = self._clock() + lifetime - renew_margin(lifetime)
                self.obtained += 1
            return self._token

    def invalidate(self) -> None:
        """Drop the token (and the JWT) after a 401: the next request obtains new ones."""
        with self._lock:
            self._token = None
        self._jwt.invalidate()

    def _exchange(self) -> tuple[str, float]:
        try:
            response = http.send(
                "POST",
                self._url,
                connector=self._connector,
                session=self._session,
                auth=self._jwt,
                headers={"Accept": "application/vnd.github+json"},
                timeout=self._timeout,
                target=f"{self._connector}'s installation token endpoint",
            )
            body = http.parse_json(response, connector=self._connector)
        except (AuthenticationError, RateLimitedError):
            raise
        except RetriableError as exc:
            # The API request itself has not left: retrying it is always safe.
            raise RetriableError(
                str(exc), connector=self._connector, status=exc.status, retry_after=exc.retry_after
            ) from None
        except ProviderError as exc:
            raise FatalError(
                f"{self._connector} refused an installation token: {exc}", connector=self._connector
            ) from None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RetriableError(
                f"{self._connector}'s installation token answer holds no token.",
                connector=self._connector,
            )
        return token, self._lifetime(body.get("expires_at"))

    def _lifetime(self, expires_at: Any) -> float:
        try:
            when = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return DEFAULT_LIFETIME
        return max(when - float(self._clock()), 1.0)


class GitHubAppHooks(Connector):
    """The hook class of the declared GitHub connector (``class:`` in github.yaml)."""

    def signer(self) -> AuthBase | None:
        """An installation token when the connection holds the app's private key (the secret
        and config keys named by the manifest's ``auth.jwt_app``)."""
        setting = self.auth_settings.get("jwt_app", {})
        key = self.secret(setting.get("secret", "private_key"))
        if not key:
            return None
        issuer_key = setting.get("issuer", "app_id")
        installation_key = setting.get("installation", "installation_id")
        app_id = self.config.get(issuer_key)
        installation = self.config.get(installation_key)
        if not app_id or not installation:
            raise ConfigurationError(
                f"the {self.name} connection holds a GitHub App private key but its config "
                f"lacks {issuer_key} or {installation_key}."
            )
        path = f"/app/installations/{quote(str(installation), safe='')}/access_tokens"
        return InstallationToken(
            JWTAuthenticator(key, issuer=str(app_id)),
            self.url(path),
            session=self.session,
            timeout=self.timeout,
            connector=self.name,
        )
