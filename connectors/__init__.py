"""Connectors: what each provider offers, and how the fleet finds them (entry points)."""

from __future__ import annotations

from connectors.base import Connector
from connectors.registry import discover_connectors, get_connector

__all__ = ["Connector", "discover_connectors", "get_connector"]
