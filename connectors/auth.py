"""Authenticators: how a request proves who sends it, as ``requests.auth.AuthBase`` classes.

A connector builds one authenticator from a connection's credentials and sets it as its
session's ``auth``; every request then carries the credential. Modelled on the Singer SDK's
``authenticators.py``. Two kinds exist:

- static credentials (:class:`APIKeyAuthenticator`, :class:`BearerTokenAuthenticator`,
  :class:`BasicAuthenticator`), set on every request as given;
- tokens that expire: :class:`OAuth2Authenticator` asks its caller for the current access token
  on every request (the caller owns refresh, locking and storage: :mod:`tasks.tokens`),
  :class:`JWTAuthenticator` signs its own short-lived token with the connection's private key
  (JWT-based app auth, built in ``Connector.signer``), and
  :class:`connectors.oauth.ClientCredentialsAuthenticator` runs the client-credentials grant
  itself for a connector used on its own.

No authenticator shows a secret in its ``repr`` or ``str``, and no error raised here quotes one.
A credential that an HTTP header cannot carry (a control character, a line break, text outside
what the scheme sends) is refused before the request is built, with a sentence naming the
credential but never its value: :func:`secret_value_problem` refuses it when it is stored, and
each authenticator again when it is used (an OAuth token comes from the provider).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

import jwt
import requests
from requests.auth import AuthBase, HTTPBasicAuth

from spark_integrations.connectors.oauth import renew_margin
from spark_integrations.errors import FatalError, UsageError

__all__ = [
    "APIKeyAuthenticator",
    "BasicAuthenticator",
    "BearerTokenAuthenticator",
    "JWTAuthenticator",
    "OAuth2Authenticator",
    "check_secret_values",
    "header_safe",
    "secret_value_problem",
]

# A header value the fleet sends: visible ASCII, spaces only inside (RFC 9110 field-value, less
# the obsolete text beyond ASCII, which servers read differently).
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
# A token sent alone (bearer, API key): visible ASCII, no space at all.
_TOKEN = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Secrets sent as a token in a header, by the name a connection stores them under.
_TOKEN_SECRETS = frozenset({"api_key", "access_token", "refresh_token", "token", "bearer_token"})
# Secrets sent through HTTP Basic (requests encodes them as Latin-1).
_BASIC_SECRETS = frozenset({"username", "password", "client_secret"})


def header_safe(value: str) -> bool:
    """True when ``value`` can be sent as an HTTP header value as it is."""
    return bool(_HEADER_VALUE.fullmatch(value))


def _basic_problem(key: str, value: str) -> str | None:
    if _CONTROL.search(value):
        return f"secret {key} holds a control character or a line break, which HTTP cannot send."
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return (
            f"secret {key} holds characters HTTP Basic authentication cannot carry (it sends "
            "Latin-1 text); check that it was copied whole."
        )
    if key == "username" and ":" in value:
        return "secret username must not hold ':' (HTTP Basic separates it from the password)."
    return None


def secret_value_problem(key: str, value: str) -> str | None:
    """Why a secret cannot be sent as its scheme requires, in one sentence naming the secret
    but never its value; ``None`` when it can.

    ``api_key`` and tokens travel as a bearer token or an API-key header: visible ASCII without
    spaces. ``username``, ``password`` and ``client_secret`` travel through HTTP Basic: no
    control characters, Latin-1 text, and no ``:`` in a username. Other secrets (a webhook's
    signing secret, a private key) never enter a header and are not constrained here.
    """
    if key in _TOKEN_SECRETS and not _TOKEN.fullmatch(value):
        return (
            f"secret {key} holds characters an HTTP header cannot carry (a token is sent as "
            "visible ASCII without spaces); check that it was copied whole."
        )
    if key in _BASIC_SECRETS:
        return _basic_problem(key, value)
    return None


def check_secret_values(secrets: Mapping[str, str]) -> None:
    """Refuse the first secret that cannot be sent as its scheme requires.

    Raises:
        UsageError: one sentence naming the secret, never its value.
    """
    for key, value in secrets.items():
        problem = secret_value_problem(key, value)
        if problem is not None:
            raise UsageError(problem)


def _unsendable(what: str) -> FatalError:
    # Never chained to the encoder's error, whose arguments hold the value.
    return FatalError(
        f"the connection's {what} cannot be sent in an HTTP header (it holds characters a "
        "header cannot carry); store it again."
    )


class APIKeyAuthenticator(AuthBase):
    """A static API key, sent in a header (``X-API-Key: K``) or a query parameter (``?key=K``)."""

    def __init__(
        self,
        key: str,
        *,
        location: Literal["header", "query"] = "header",
        name: str = "X-API-Key",
        prefix: str | None = None,
    ) -> None:
        """Configure where the key goes.

        Args:
            key: the API key.
            location: ``"header"`` or ``"query"``.
            name: the header's or query parameter's name.
            prefix: put before the key in a header, with a space (``"Token"``, ``"Bearer"``).
        """
        if location not in ("header", "query"):
            raise ValueError("location must be 'header' or 'query'.")
        if not key:
            raise ValueError("the API key is empty.")
        if location == "header" and (
            not header_safe(name) or (prefix is not None and not header_safe(prefix))
        ):
            raise ValueError("the header name and prefix must be visible ASCII.")
        self._key = key
        self.location = location
        self.name = name
        self.prefix = prefix

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if not _TOKEN.fullmatch(self._key):
            raise _unsendable("API key")
        if self.location == "header":
            r.headers[self.name] = f"{self.prefix} {self._key}" if self.prefix else self._key
        else:
            r.url = _with_query_param(str(r.url), self.name, self._key)
        return r

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(location={self.location!r}, name={self.name!r}, "
            f"prefix={self.prefix!r})"
        )


class BearerTokenAuthenticator(AuthBase):
    """A static token sent as ``Authorization: Bearer T``."""

    def __init__(self, token: str) -> None:
        """Keep the token; it is never shown."""
        if not token:
            raise ValueError("the bearer token is empty.")
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if not _TOKEN.fullmatch(self._token):
            raise _unsendable("bearer token")
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BasicAuthenticator(AuthBase):
    """HTTP Basic authentication.

    The username is hidden too: some providers (Stripe among them) take the secret key as the
    username with an empty password.
    """

    def __init__(self, username: str, password: str) -> None:
        """Keep the credentials; neither is ever shown."""
        self._usable = (
            _basic_problem("username", username) is None
            and _basic_problem("password", password) is None
        )
        self._basic = HTTPBasicAuth(username, password)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self._usable:
            raise _unsendable("user name or password")
        result: requests.PreparedRequest = self._basic(r)
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class OAuth2Authenticator(AuthBase):
    """An OAuth 2.0 access token as a bearer, fetched from the caller on every request.

    The token's lifecycle (refresh ahead of expiry, a lock shared by the fleet, storage of
    rotated refresh tokens) belongs to the caller, which knows the store: this class only asks
    ``token_source()`` for the token to send, and tells the caller through ``invalidate()`` that
    the provider refused it.
    """

    def __init__(
        self,
        token_source: Callable[[], str],
        *,
        on_invalidate: Callable[[], None] | None = None,
    ) -> None:
        """Configure where tokens come from.

        Args:
            token_source: returns the access token to send; called once per request.
            on_invalidate: called by :meth:`invalidate`, so the caller can refresh its token.
        """
        self._token_source = token_source
        self._on_invalidate = on_invalidate

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._token_source()
        if not _TOKEN.fullmatch(token):
            raise _unsendable("OAuth access token")
        r.headers["Authorization"] = f"Bearer {token}"
        return r

    def invalidate(self) -> None:
        """Report that the provider refused the token (a 401), so the next one is fresh."""
        if self._on_invalidate is not None:
            self._on_invalidate()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class JWTAuthenticator(AuthBase):
    """A JSON Web Token signed by the connection's own key, as a bearer (RFC 7519, RFC 7523).

    For schemes where the client proves itself with a short-lived signed token instead of a
    stored secret: GitHub Apps (RS256 over ``iss`` = the app id), Google service accounts
    (exchanged at a token endpoint), Zoom server apps. The token is signed with PyJWT and cached
    until :func:`renew_margin` before its expiry. Connectors build it in :meth:`Connector.signer`.
    """

    def __init__(
        self,
        private_key: str,
        *,
        issuer: str,
        algorithm: str = "RS256",
        lifetime: float = 540.0,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the token.

        Args:
            private_key: the PEM private key (or HMAC secret for ``HS*``); never shown.
            issuer: the ``iss`` claim (an app id, a client id, a service account's email).
            algorithm: a JWS algorithm PyJWT knows (``RS256``, ``ES256``, ``HS256``, ...).
            lifetime: seconds each token is valid from now; ``iat`` is backdated 30 s against
                clock skew, so ``exp - iat`` is ``lifetime + 30`` (GitHub allows 600: keep
                ``lifetime`` at 570 or less there; the default is 540).
            claims: more claims (``aud``, ``sub``, ``scope``); ``iat``/``exp`` are set here.
            headers: extra JOSE headers (``kid``).
            clock: wall clock in seconds since the epoch, replaced by tests.
        """
        if not private_key:
            raise ValueError("the private key is empty.")
        if lifetime <= 0:
            raise ValueError("lifetime must be > 0 seconds.")
        self._key = private_key
        self.issuer = issuer
        self.algorithm = algorithm
        self.lifetime = lifetime
        self.claims = dict(claims or {})
        self.headers = dict(headers or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.issued = 0

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token()}"
        return r

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer={self.issuer!r}, algorithm={self.algorithm!r})"

    def token(self) -> str:
        """The current signed token, signed anew near its expiry."""
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._renew_at:
                # Backdated a little: providers reject an iat ahead of their clock.
                issued_at = int(now) - 30
                expires = int(now + self.lifetime)
                payload = {**self.claims, "iss": self.issuer, "iat": issued_at, "exp": expires}
                try:
                    self._token = jwt.encode(
                        payload, self._key, algorithm=self.algorithm, headers=self.headers or None
                    )
                except (jwt.PyJWTError, ValueError, TypeError) as exc:
                    # Not chained: the key parser's message may quote the key.
                    raise FatalError(
                        f"the connection's private key cannot sign {self.algorithm} tokens "
                        f"({type(exc).__name__})."
                    ) from None
                self._renew_at = now + self.lifetime - renew_margin(self.lifetime)
                self.issued += 1
            return self._token

    def invalidate(self) -> None:
        """Sign a new token on the next request (after a 401)."""
        with self._lock:
            self._token = None


def _with_query_param(url: str, name: str, value: str) -> str:
    """``url`` with the query parameter ``name`` set to ``value``, replacing any earlier one.

    Replacing matters when following a next-page link that already carries the parameter; the
    other parameters are kept byte for byte, as a link may be signed.
    """
    parts = urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) != name
    ]
    kept.append(urlencode({name: value}))
    return urlunsplit(parts._replace(query="&".join(kept)))
