"""The ``sandbox`` connector: the fleet's client side of the emulated provider (CONTRACT.md).

This release declares the connector (its config, secrets, actions and stream) so connections
to a sandbox can be stored and validated; the HTTP client that runs its actions arrives with
the connector framework.
"""

from __future__ import annotations

from typing import ClassVar

from connectors.base import Connector

__all__ = ["SandboxConnector"]


class SandboxConnector(Connector):
    """Declaration of the sandbox provider's connector."""

    name = "sandbox"
    oauth = True
    secret_keys: ClassVar[tuple[str, ...]] = ("api_key", "username", "password")
    direct_credentials: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("api_key",),
        ("username", "password"),
    )
    actions = ("create_message",)
    streams = ("items",)
    webhook_scheme = "standard-webhooks"
