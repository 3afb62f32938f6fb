"""Static credentials as a connector declares them (``auth_kinds``, ``auth_settings``): which
one a connection's secrets allow, and how it is sent. See :meth:`Connector.authenticator`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from requests.auth import AuthBase

from spark_integrations.connectors.auth import (
    APIKeyAuthenticator,
    BasicAuthenticator,
    OAuth2Authenticator,
)
from spark_integrations.connectors.oauth import check_token_url
from spark_integrations.errors import AuthenticationError, ConfigurationError

if TYPE_CHECKING:
    from spark_integrations.connectors.base import TokenSource

__all__ = ["declared_authenticator", "secret_url"]


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
