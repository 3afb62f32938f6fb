"""Destinations: where a sync delivers its pages (``store``, ``action:CONNECTION_ID:ACTION``,
``spark:CONNECTION_ID:WORKFLOW_ID``), with params (``--with NAME=TEMPLATE``) rendered from each
record (:mod:`destinations.templates`).

Pluggable like connectors: a destination is a :class:`Destination` subclass registered under a
kind, built-in or from the entry-point group ``spark_integrations.destinations``.
"""

from __future__ import annotations

from spark_integrations.destinations.base import (
    Batch,
    Delivered,
    Destination,
    destination_for,
    destination_kinds,
    discover_destinations,
)

__all__ = [
    "Batch",
    "Delivered",
    "Destination",
    "destination_for",
    "destination_kinds",
    "discover_destinations",
]
