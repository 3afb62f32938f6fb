"""Worker signal handlers: per-process resources after fork."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from spark_integrations.forks import reset_after_fork

__all__ = ["connect"]


def _on_process_init(**_: Any) -> None:
    # A pool child starts with its parent's engines, sessions and clients: every per-process
    # cache of the fleet is reset in one place (forks), so the child opens its own on first use.
    reset_after_fork()


def connect() -> None:
    """Connect the fleet's handlers to Celery's signals (idempotent)."""
    worker_process_init.connect(_on_process_init, weak=False, dispatch_uid="spark-int-proc-init")
