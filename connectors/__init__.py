"""Connectors: what each provider offers, and how the fleet finds them (entry points)."""

from __future__ import annotations

from connectors.base import Connector
from connectors.registry import get_connector, registry

__all__ = ["Connector", "get_connector", "registry"]
