"""The auth kinds a connector declares."""

from __future__ import annotations

from spark_integrations.connectors.base import Connector

__all__ = ["AUTH_KINDS", "auth_kinds_of"]

#: The auth kinds a connector may declare.
AUTH_KINDS = (
    "api_key",
    "bearer",
    "basic",
    "oauth2",
    "client_credentials",
    "jwt_app",
    "secret_url",
)


def auth_kinds_of(connector: type[Connector]) -> tuple[str, ...]:
    """The auth kinds the connector declares (``auth_kinds``, or derived from its secrets)."""
    return tuple(connector.declared_auth_kinds())
