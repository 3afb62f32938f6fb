"""Tasks: connectors wired to the store and to Celery (retries, budgets, dead letters)."""

from __future__ import annotations

from tasks.base import FleetTask

__all__ = ["FleetTask"]
