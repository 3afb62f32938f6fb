"""Tasks: connectors wired to the store and to Celery (retries, budgets, dead letters)."""

from __future__ import annotations

from spark_integrations.tasks.base import FleetTask

__all__ = ["FleetTask"]
