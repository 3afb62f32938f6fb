"""A connection's OAuth 2.0 client, derived from its connector's declaration and its config.

:meth:`connectors.declaration.ConnectorDeclaration.oauth_client` delegates here: the endpoints
(absolute, or relative to the base URL), the grant, the scopes and the token-endpoint method,
each the connection's config first, then the connector's declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spark_integrations.connectors.oauth import OAuthClient, check_token_url
from spark_integrations.connectors.templates import fill_placeholders
from spark_integrations.errors import UsageError

if TYPE_CHECKING:
    from spark_integrations.connectors.declaration import ConnectorDeclaration

__all__ = ["build_oauth_client"]


def build_oauth_client(
    declaration: type[ConnectorDeclaration],
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
) -> OAuthClient:
    """This connection's OAuth client, or one :class:`UsageError` saying what is missing."""
    cls = declaration
    if not cls.oauth:
        raise UsageError(f"{cls.name} does not offer OAuth 2.0.")
    client_id = config.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise UsageError(f"the {cls.name} connection has no client_id in its config.")
    client_secret = secrets.get("client_secret")
    if not client_secret:
        raise UsageError(
            f"the {cls.name} connection holds no client_secret; add it with "
            "`connections update ID --secret client_secret`."
        )
    base_url = str(config.get("base_url") or cls.default_base_url or "").rstrip("/")

    base_url = fill_placeholders(base_url, config, f"{cls.name}'s base_url")

    def endpoint(key: str, default: str | None) -> str:
        value = config.get(key) or default
        if not value:
            raise UsageError(f"the {cls.name} connection has no {key} (config {key}).")
        url = fill_placeholders(str(value), config, f"{cls.name}'s {key}")
        if not url.startswith(("http://", "https://")):
            if not base_url:
                raise UsageError(f"{cls.name}'s {key} is relative and there is no base_url.")
            url = base_url + "/" + url.lstrip("/")
        try:
            check_token_url(url)
        except ValueError:
            raise UsageError(
                f"config {key} must be an https:// URL (http:// only to a loopback host)."
            ) from None
        return url

    scopes = config.get("scopes")
    params = config.get("authorize_params") or {}
    grant = cls.grant_type_of(config)
    # The client-credentials grant has its own token endpoint, scopes and method when the
    # connector declares them, and needs no authorisation endpoint.
    cc = cls.client_credentials_settings if grant == "client_credentials" else {}
    token_url = endpoint("token_url", cc.get("token_url") or cls.token_url)
    declared_scopes = tuple(cc["scopes"]) if "scopes" in cc else cls.oauth_scopes
    method = cc.get("token_auth_method") or cls.token_auth_method
    return OAuthClient(
        connector=cls.name,
        authorize_url=(
            endpoint("authorize_url", cls.authorize_url)
            if cls.authorize_url or config.get("authorize_url") or not cc
            else token_url
        ),
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(scopes) if isinstance(scopes, list) else declared_scopes,
        auth_method=str(config.get("token_auth_method") or method),
        authorize_params={**cls.authorize_params, **params},
        grant_type=grant,
        token_timeout=cls.token_timeout,
        error_codes=dict(cls.token_error_codes),
    )
