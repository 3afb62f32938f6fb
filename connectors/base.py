"""What a connector declares about itself.

A connector is a class registered in the entry-point group ``spark_integrations.connectors``.
It knows HTTP and its provider, never Celery nor the store: its caller hands it config and
credentials. This module holds the declaration every connector makes (name, config and secret
keys, actions, streams, webhook scheme) and the validation of a connection's config and secrets
against it, which the command line uses before anything is stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from errors import UsageError

__all__ = ["COMMON_CONFIG_KEYS", "Connector"]

# Every HTTP connector accepts these (CONTRACT.md, "Connector configuration").
COMMON_CONFIG_KEYS = ("base_url", "rate_limit")
OAUTH_CONFIG_KEYS = ("client_id", "authorize_url", "token_url", "scopes")


class Connector:
    """Base class of every connector: a declaration plus, in subclasses, the provider's client."""

    name: ClassVar[str]
    #: Config keys beyond the common ones (``base_url``, ``rate_limit``).
    config_keys: ClassVar[tuple[str, ...]] = ()
    #: Names of the secrets a connection of this provider may hold.
    secret_keys: ClassVar[tuple[str, ...]] = ("webhook_secret",)
    #: Secrets that, alone, let the connector call the provider without an OAuth connect.
    direct_credentials: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: True when the provider offers the OAuth 2.0 authorisation-code flow.
    oauth: ClassVar[bool] = False
    actions: ClassVar[tuple[str, ...]] = ()
    streams: ClassVar[tuple[str, ...]] = ()
    webhook_scheme: ClassVar[str | None] = None

    @classmethod
    def all_config_keys(cls) -> tuple[str, ...]:
        """Every config key a connection of this provider accepts."""
        extra = OAUTH_CONFIG_KEYS if cls.oauth else ()
        return tuple(dict.fromkeys((*COMMON_CONFIG_KEYS, *extra, *cls.config_keys)))

    @classmethod
    def all_secret_keys(cls) -> tuple[str, ...]:
        """Every secret a connection of this provider may hold."""
        extra = ("client_secret",) if cls.oauth else ()
        return tuple(dict.fromkeys((*cls.secret_keys, *extra, "webhook_secret")))

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The connector as ``connectors list --json`` shows it (CONTRACT.md)."""
        return {
            "name": cls.name,
            "actions": list(cls.actions),
            "streams": list(cls.streams),
            "webhook_scheme": cls.webhook_scheme,
            "config_keys": list(cls.all_config_keys()),
            "secret_keys": list(cls.all_secret_keys()),
        }

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Refuse a config with unknown keys or ill-typed common values, in one sentence."""
        known = cls.all_config_keys()
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise UsageError(
                f"{cls.name} has no config key {unknown[0]!r}; it accepts {', '.join(known)}."
            )
        for key in ("base_url", "authorize_url", "token_url"):
            if key in config:
                value = config[key]
                parts = urlsplit(value) if isinstance(value, str) else None
                if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                    raise UsageError(f"config {key} must be an http:// or https:// URL.")
        if "rate_limit" in config:
            value = config["rate_limit"]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise UsageError("config rate_limit must be a number of requests per second > 0.")
        if "scopes" in config:
            scopes = config["scopes"]
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise UsageError("config scopes must be a list of strings.")

    @classmethod
    def validate_secrets(cls, secrets: Mapping[str, str]) -> None:
        """Refuse secrets this connector does not know, naming the key but never the value."""
        known = cls.all_secret_keys()
        for key, value in secrets.items():
            if key not in known:
                raise UsageError(
                    f"{cls.name} has no secret {key!r}; it accepts {', '.join(known)}."
                )
            if not value:
                raise UsageError(f"secret {key} is empty.")

    @classmethod
    def initial_status(cls, secrets: Mapping[str, str]) -> str:
        """``active`` when the secrets alone let the fleet call, else ``needs_auth`` (connect)."""
        for needed in cls.direct_credentials:
            if all(secrets.get(k) for k in needed):
                return "active"
        return "needs_auth" if cls.oauth else "active"
