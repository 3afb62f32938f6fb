"""The OAuth 2.0 token endpoint and the grants the fleet sends it, failures translated once.

:class:`TokenEndpoint` sends the authorisation-code, refresh-token and client-credentials grants
(bodies built and answers read with oauthlib; requests sent through
:func:`connectors.http.send`), and turns every failure into one error of the fleet's tree,
never quoting a secret. :mod:`connectors.oauth` holds an app's OAuth settings around it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error, WebApplicationClient
from requests.auth import HTTPBasicAuth

from spark_integrations.connectors import http
from spark_integrations.connectors.http import NOT_APPLIED_STATUSES
from spark_integrations.connectors.urlpolicy import url_problem
from spark_integrations.errors import (
    AuthenticationError,
    FatalError,
    InvalidGrantError,
    ProviderError,
    RateLimitedError,
    RetriableError,
)

__all__ = ["REFUSED_CREDENTIALS", "REFUSED_REQUEST", "TokenEndpoint", "check_token_url"]

#: OAuth error codes meaning the client's credentials or grant were refused (RFC 6749 §5.2).
REFUSED_CREDENTIALS = frozenset({"invalid_client", "invalid_grant", "unauthorized_client"})
#: OAuth error codes meaning the request itself can never succeed as configured.
REFUSED_REQUEST = frozenset(
    {"invalid_request", "invalid_scope", "unsupported_grant_type", "access_denied"}
)
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")
_FORM = "application/x-www-form-urlencoded"


class TokenEndpoint:
    """An OAuth 2.0 token endpoint (RFC 6749 §3.2) and the grants the fleet sends it.

    Bodies are built and answers read with oauthlib's clients (``WebApplicationClient`` for the
    authorisation code and refresh grants, ``BackendApplicationClient`` for client credentials);
    requests go out with plain ``requests``. requests-oauthlib's ``OAuth2Session`` is not used:
    it refuses any ``http://`` URL unless ``OAUTHLIB_INSECURE_TRANSPORT`` is set for the whole
    process, it refreshes only by its own clock, and it keeps the old refresh token when an answer
    has none (../shared/NOTES.md). Here ``http://`` is allowed to loopback hosts only (the sandbox
    and tests), which keeps RFC 6749's demand for TLS everywhere else.

    Every grant returns the provider's answer as a dict holding at least a non-empty
    ``access_token``. Failures are translated once, here, and never quote a secret:

    - ``invalid_grant`` raises :class:`~errors.InvalidGrantError`; other refused client
      credentials (``invalid_client``, a 401) raise :class:`~errors.AuthenticationError`;
    - 429, 5xx and network failures raise :class:`~errors.RetriableError`, with
      ``maybe_applied`` set when the request may have reached the provider and its answer was
      lost (a read timeout, a dropped connection, an unreadable 2xx): for a rotating refresh
      token that means the provider may have used it up;
    - any other refusal raises :class:`~errors.FatalError`.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.05, 30),
        connector: str = "",
        error_codes: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the endpoint.

        Args:
            token_url: ``https://``, or ``http://`` to a loopback host.
            client_id: the client's id.
            client_secret: the client's secret; never shown.
            auth_method: ``"client_secret_basic"`` sends the client's credentials with HTTP
                Basic, ``"client_secret_post"`` in the form body (RFC 6749 §2.3.1).
            session: the session requests go through (left open); ``None`` for a private one
                per request, closed after.
            timeout: connect and read timeouts, in seconds.
            connector: the connector's name, for error messages.
            error_codes: the provider's own error codes read as the RFC 6749 code they mean
                (Slack answers a refused refresh token with ``invalid_refresh_token`` in a
                200), so a refusal is told apart from a token that never came.
        """
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ValueError("auth_method must be 'client_secret_basic' or 'client_secret_post'.")
        check_token_url(token_url)
        self.token_url = token_url
        self.client_id = client_id
        self.error_codes = dict(error_codes or {})
        self._client_secret = client_secret
        self.auth_method = auth_method
        self.timeout = timeout
        self.connector = connector
        self._session = session

    def __repr__(self) -> str:
        parts = urlsplit(self.token_url)
        # The query is left out: some providers take credentials there.
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return (
            f"{type(self).__name__}(token_url={url!r}, client_id={self.client_id!r}, "
            f"auth_method={self.auth_method!r})"
        )

    # --- grants -------------------------------------------------------------------------------

    def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None = None
    ) -> dict[str, Any]:
        """The authorisation-code grant (RFC 6749 §4.1.3), with the PKCE verifier (RFC 7636)."""
        client = WebApplicationClient(self.client_id)
        body = client.prepare_request_body(
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
            include_client_id=True,
            **self._secret_field(),
        )
        return self._grant(client, body, "authorization code")

    def refresh(self, refresh_token: str, *, scopes: Sequence[str] | None = None) -> dict[str, Any]:
        """The refresh-token grant (RFC 6749 §6)."""
        client = WebApplicationClient(self.client_id)
        posted = self.auth_method == "client_secret_post"
        # oauthlib adds client_id to a refresh body only when given it (RFC 6749 §2.3.1: the
        # client's credentials in the body are client_id and client_secret together).
        body = client.prepare_refresh_body(
            refresh_token=refresh_token,
            scope=list(scopes) if scopes else None,
            include_client_id=posted,
            **({"client_id": self.client_id} if posted else {}),
            **self._secret_field(),
        )
        return self._grant(client, body, "refresh token")

    def client_credentials(self, scopes: Sequence[str] | None = None) -> dict[str, Any]:
        """The client-credentials grant (RFC 6749 §4.4)."""
        client = BackendApplicationClient(client_id=self.client_id)
        body = client.prepare_request_body(
            scope=list(scopes) if scopes else None,
            include_client_id=self.auth_method == "client_secret_post",
            **self._secret_field(),
        )
        return self._grant(client, body, "client credentials")

    # --- the request ----------------------------------------------------------------------------

    def _secret_field(self) -> dict[str, str]:
        if self.auth_method == "client_secret_post":
            return {"client_secret": self._client_secret}
        return {}

    def _grant(self, client: Any, body: str, what: str) -> dict[str, Any]:
        basic = (
            None
            if self.auth_method == "client_secret_post"
            else HTTPBasicAuth(self.client_id, self._client_secret)
        )
        session = self._session or requests.Session()
        who = f"{self.connector}'s token endpoint" if self.connector else "the token endpoint"
        try:
            response = http.send(
                "POST",
                self.token_url,
                connector=self.connector,
                session=session,
                data=body,
                headers={"Accept": "application/json", "Content-Type": _FORM},
                auth=basic,
                timeout=self.timeout,
                judged=False,
                target=who,
            )
            with response:
                self._check_status(response, what)
                token = client.parse_request_body_response(response.text)
        except OAuth2Error as exc:
            # Not chained: the provider's error_description may quote what it was sent.
            raise self._oauth_error(exc, what) from None
        except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError) as exc:
            # oauthlib reading a body that is JSON but not an object (null, a list, a string),
            # or an expires_in it cannot add to the clock (1e400).
            what = f"gave an unreadable answer ({type(exc).__name__})"
            raise self._error(RetriableError, what, maybe_applied=True) from None
        finally:
            if self._session is None:
                session.close()
        access = token.get("access_token") if isinstance(token, dict) else None
        if not isinstance(access, str) or not access:
            raise self._error(
                RetriableError,
                "gave no usable token (access_token not a string)",
                maybe_applied=True,
            )
        return dict(token)

    def _error(
        self,
        kind: type[ProviderError],
        what: str,
        response: requests.Response | None = None,
        **extra: Any,
    ) -> ProviderError:
        """An error of ``kind`` saying what the token endpoint did; never quotes a secret."""
        who = f"{self.connector}'s" if self.connector else "the"
        status = None if response is None else response.status_code
        return kind(
            f"{who} token endpoint {what}.",
            connector=self.connector,
            status=status,
            response=response,
            **extra,
        )

    def _check_status(self, response: requests.Response, what: str) -> None:
        """Translate an error status before oauthlib reads the body.

        oauthlib parses any answer as a token, whatever its status: an HTML 503 page would
        surface as a confusing "missing token" error without this.
        """
        status = response.status_code
        if status < 400:
            return
        code = self._rfc_code(_oauth_error_code(response))
        detail = f"{status}, {code}" if code else str(status)
        if code == "invalid_grant":
            raise self._error(InvalidGrantError, f"refused the {what} ({detail})", response)
        if code in REFUSED_CREDENTIALS or (status == 401 and code not in REFUSED_REQUEST):
            raise self._error(
                AuthenticationError, f"refused the client credentials ({detail})", response
            )
        if status == 429 or status >= 500:
            kind = RateLimitedError if status == 429 else RetriableError
            # A 500, 502 or 504 may come after the grant took effect (a rotated refresh token).
            raise self._error(
                kind,
                f"failed ({detail})",
                response,
                retry_after=_retry_after(response),
                maybe_applied=status not in NOT_APPLIED_STATUSES,
            )
        raise self._error(FatalError, f"refused the token request ({detail})", response)

    def _rfc_code(self, code: str) -> str:
        """The RFC 6749 code a provider's own error code means (itself when not mapped)."""
        return self.error_codes.get(code, code) if code else code

    def _oauth_error(self, exc: OAuth2Error, what: str) -> ProviderError:
        """Translate an oauthlib error raised while reading a 2xx answer."""
        code = exc.error if isinstance(exc.error, str) and _ERROR_CODE.fullmatch(exc.error) else ""
        code = self._rfc_code(code)
        if code == "invalid_grant":
            return self._error(InvalidGrantError, f"refused the {what} ({code})")
        if code in REFUSED_CREDENTIALS:
            return self._error(AuthenticationError, f"refused the client credentials ({code})")
        if code in REFUSED_REQUEST:
            return self._error(FatalError, f"refused the token request ({code})")
        return self._error(
            RetriableError, f"gave no usable token ({code or 'no code'})", maybe_applied=True
        )


def check_token_url(url: str) -> None:
    """Refuse a token or authorisation URL outside the outbound URL policy
    (:mod:`connectors.urlpolicy`: ``https://``, ``http://`` only to loopback or to a host the
    operator allows; no user-info, no fragment)."""
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(f"token_url {problem}.")


def _oauth_error_code(response: requests.Response) -> str:
    """The RFC 6749 ``error`` code of an error answer, when it is a short, plain code."""
    try:
        body = response.json()
    except ValueError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""


def _retry_after(response: requests.Response) -> float | None:
    """The ``Retry-After`` header in seconds, when it is a number."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
