"""Tasks the integration tests load into real workers (``worker -- --include ...``).

They record each delivery in the coordination Redis, so a test can see which process ran what,
and can kill their own pool process to play a poison message.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from celery import shared_task

from spark_integrations.tasks.base import FleetTask
from spark_integrations.tasks.context import coordination_redis

PROBE = "tests.probe"


def started_key(marker: str) -> str:
    return f"test-probe:{marker}:started"


def finished_key(marker: str) -> str:
    return f"test-probe:{marker}:finished"


@shared_task(name=PROBE, base=FleetTask, bind=True)
def probe(
    self: FleetTask,
    marker: str,
    first_sleep: float = 0.0,
    always_kill_self: bool = False,
) -> dict[str, Any]:
    """Record the delivery; sleep on the first one only; optionally die every time."""
    client = coordination_redis()
    n = client.rpush(
        started_key(marker), json.dumps({"pid": os.getpid(), "worker": self.request.hostname})
    )
    if always_kill_self:
        os.kill(os.getpid(), signal.SIGKILL)
    if n == 1 and first_sleep:
        time.sleep(first_sleep)
    client.rpush(finished_key(marker), json.dumps({"pid": os.getpid()}))
    return {"marker": marker, "pid": os.getpid(), "deliveries": n}
