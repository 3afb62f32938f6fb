"""Static credentials as a connector declares them (``auth_kinds``, ``auth_settings``): which
one a connection's secrets allow, and how it is sent. See :meth:`Connector.authenticator`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from requests.auth import AuthBase

from spark_integrations.connectors.auth import (
    APIKeyAuthenticator,
    BasicAuthenticator,
    OAuth2Authenticator,
)
from spark_integrations.connectors.oauth import check_token_url
from spark_integrations.errors import AuthenticationError, ConfigurationError, ProviderError

if TYPE_CHECKING:
    from spark_integrations.connectors.base import TokenSource

__all__ = ["declared_authenticator", "mask_secrets", "secret_url"]

#: Shorter values are not masked (they would mask ordinary words); real credentials are longer.
_MASKED_FROM = 8
_MASK = "[secret]"


def secret_url(
    settings: Mapping[str, Mapping[str, str]], secrets: Mapping[str, str], connector: str
) -> str | None:
    """The connection's secret URL (``settings['secret_url']``: the whole URL is the secret,
    as with incoming webhooks), checked against the outbound policy; ``None`` without one.
    The URL is never quoted."""
    setting = settings.get("secret_url")
    if not setting:
        return None
    value = secrets.get(setting.get("secret", ""))
    if not value:
        return None
    try:
        check_token_url(value)
    except ValueError:
        raise ConfigurationError(
            f"the {connector} connection's secret {setting.get('secret')} must be an "
            "https:// URL (http:// only to a loopback host)."
        ) from None
    return value


def _api_key(value: str, setting: Mapping[str, str]) -> AuthBase:
    if setting.get("query"):
        return APIKeyAuthenticator(value, location="query", name=setting["query"])
    header = setting.get("header")
    if header:
        return APIKeyAuthenticator(value, name=header, prefix=setting.get("scheme"))
    return APIKeyAuthenticator(
        value, name="Authorization", prefix=setting.get("scheme") or "Bearer"
    )


def declared_authenticator(
    kinds: Sequence[str],
    settings: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, str],
    *,
    connector: str,
    token_source: TokenSource | None = None,
    has_secret_url: bool = False,
) -> AuthBase | None:
    """The first of ``kinds`` whose secrets the connection holds, sent as ``settings`` say:
    ``bearer`` (``Authorization: <scheme> <secret>``), ``api_key`` (a header, with an optional
    scheme, or a query parameter), ``basic`` (secret names; an empty password name sends an
    empty password), ``secret_url`` (nothing to add: the URL carries it), ``oauth2`` and
    ``client_credentials`` (the token source's access tokens).

    Raises:
        AuthenticationError: the connection holds none of them.
    """
    for kind in kinds:
        setting = settings.get(kind, {})
        value = secrets.get(setting.get("secret", ""))
        if kind == "secret_url" and has_secret_url:
            return None
        if kind == "bearer" and value:
            scheme = setting.get("scheme") or "Bearer"
            return APIKeyAuthenticator(value, name="Authorization", prefix=scheme)
        if kind == "api_key" and value:
            return _api_key(value, setting)
        if kind == "basic":
            username = secrets.get(setting.get("username", ""))
            password_key = setting.get("password", "")
            password = secrets.get(password_key) if password_key else ""
            if username and password is not None and (password or not password_key):
                return BasicAuthenticator(username, password)
        if kind in ("oauth2", "client_credentials") and token_source is not None:
            return OAuth2Authenticator(token_source, on_invalidate=token_source.invalidate)
    raise AuthenticationError(
        f"the {connector} connection holds no credentials for {', '.join(kinds)}; add its "
        "secrets or connect it first.",
        connector=connector,
    )


def _secret_parts(values: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for value in values:
        if not isinstance(value, str) or len(value) < _MASKED_FROM:
            continue
        found.add(value)
        if "://" in value:  # a secret URL: its path segments and query values too (a token)
            parts = urlsplit(value)
            pieces = [unquote(p) for p in parts.path.split("/")]
            pieces += [v for _, v in parse_qsl(parts.query)]
            found.update(p for p in pieces if len(p) >= _MASKED_FROM)
    return found


def mask_secrets(exc: ProviderError, secrets: Iterable[str]) -> ProviderError:
    """``exc`` with every secret the provider echoed in its message replaced by ``[secret]``:
    the connection's secrets, the parts of a secret URL, and the credential the request was
    sent with (an OAuth access token is no stored secret). A provider quoting a key back
    ("Invalid API key provided: sk_...") must not put it in a dead letter."""
    values = list(secrets)
    request = getattr(getattr(exc, "response", None), "request", None)
    sent = getattr(request, "headers", None) or {}
    values += [part for part in str(sent.get("Authorization", "")).split(" ") if part]
    message = str(exc)
    for value in sorted(_secret_parts(values), key=len, reverse=True):
        message = message.replace(value, _MASK)
    if message != str(exc):
        exc.args = (message,)
    return exc
