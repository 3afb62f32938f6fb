"""Worker signal handlers: per-process resources after fork."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from spark_integrations.store import dispose_inherited

__all__ = ["connect"]


def _on_process_init(**_: Any) -> None:
    # A pool child starts with its parent's engines: drop them (without closing the parent's
    # sockets) so the child opens its own connections on first use.
    dispose_inherited()


def connect() -> None:
    """Connect the fleet's handlers to Celery's signals (idempotent)."""
    worker_process_init.connect(_on_process_init, weak=False, dispatch_uid="spark-int-proc-init")
