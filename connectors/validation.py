"""The checks a connection's config and secrets must pass before they are stored.

:meth:`connectors.declaration.ConnectorDeclaration.validate_config` and
:meth:`~connectors.declaration.ConnectorDeclaration.validate_secrets` delegate here; each check
refuses bad input in one sentence (:class:`errors.UsageError`) and never quotes a secret.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from spark_integrations.connectors.oauth import GRANT_TYPES, TOKEN_AUTH_METHODS, check_token_url
from spark_integrations.errors import UsageError

if TYPE_CHECKING:
    from spark_integrations.connectors.declaration import ConnectorDeclaration

__all__ = ["check_config", "check_secrets"]


def _seconds(value: Any) -> bool:
    """True for a finite number > 0 (a bool is no number here)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def check_config(declaration: type[ConnectorDeclaration], config: Mapping[str, Any]) -> None:
    """Refuse a config with unknown keys or ill-typed common values, in one sentence."""
    name = declaration.name
    known = declaration.all_config_keys()
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise UsageError(f"{name} has no config key {unknown[0]!r}; it accepts {', '.join(known)}.")
    for key in declaration.url_keys():
        if key in config:
            value = config[key]
            parts = urlsplit(value) if isinstance(value, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise UsageError(f"config {key} must be an http:// or https:// URL.")
    if "rate_limit" in config and not _seconds(config["rate_limit"]):
        raise UsageError("config rate_limit must be a number of requests per second > 0.")
    for key in ("retry_window", "breaker_reset_timeout"):
        if not _seconds(config.get(key, 1)):
            raise UsageError(f"config {key} must be a number of seconds > 0.")
    for key in ("retry_attempts", "breaker_fail_max"):
        value = config.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"config {key} must be a whole number >= 1.")
    if "scopes" in config:
        scopes = config["scopes"]
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise UsageError("config scopes must be a list of strings.")
    if "authorize_params" in config:
        params = config["authorize_params"]
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise UsageError("config authorize_params must be an object of strings.")
    if config.get("token_auth_method", TOKEN_AUTH_METHODS[0]) not in TOKEN_AUTH_METHODS:
        raise UsageError(
            f"config token_auth_method must be one of {', '.join(TOKEN_AUTH_METHODS)}."
        )
    if config.get("grant_type", GRANT_TYPES[0]) not in GRANT_TYPES:
        raise UsageError(f"config grant_type must be one of {', '.join(GRANT_TYPES)}.")
    kinds = getattr(declaration, "auth_kinds", ())
    for grant, kind in (("client_credentials", "client_credentials"),
                        ("authorization_code", "oauth2")):  # fmt: skip
        if config.get("grant_type") == grant and kinds and kind not in kinds:
            raise UsageError(
                f"{name} does not offer the {grant} grant (its auth kinds: {', '.join(kinds)})."
            )
    if "refresh_idle_after" in config and not _seconds(config["refresh_idle_after"]):
        raise UsageError("config refresh_idle_after must be a number of seconds > 0.")


def check_secrets(declaration: type[ConnectorDeclaration], secrets: Mapping[str, str]) -> None:
    """Refuse secrets the connector does not know, naming the key but never the value."""
    known = declaration.all_secret_keys()
    for key, value in secrets.items():
        if key not in known:
            raise UsageError(
                f"{declaration.name} has no secret {key!r}; it accepts {', '.join(known)}."
            )
        if not value:
            raise UsageError(f"secret {key} is empty.")
    url_secret = declaration.auth_settings.get("secret_url", {}).get("secret")
    if url_secret and secrets.get(url_secret):
        # The whole URL is the credential (incoming webhooks): held to the outbound URL
        # policy when it is stored, not first when a call uses it; never quoted.
        try:
            check_token_url(secrets[url_secret])
        except ValueError:
            raise UsageError(
                f"secret {url_secret} must be an https:// URL (http:// only to a loopback host)."
            ) from None
