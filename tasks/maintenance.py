"""Maintenance tasks of the fleet (queue ``integrations.maintenance``)."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import shared_task

from constants import TASK_PING
from errors import UsageError
from tasks.base import FleetTask

__all__ = ["ping"]


@shared_task(name=TASK_PING, base=FleetTask, bind=True)
def ping(self: FleetTask, echo: str | None = None) -> dict[str, Any]:
    """Answer from a worker: the round trip that proves broker, worker and result backend."""
    if echo is not None and not isinstance(echo, str):
        raise UsageError("echo must be a string.")
    return {
        "ok": True,
        "echo": echo,
        "worker": self.request.hostname,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
