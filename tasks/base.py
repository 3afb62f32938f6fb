"""The base class of every fleet task: counts deliveries and stops poison messages.

With late acks and ``task_reject_on_worker_lost`` a task whose pool process died is handed out
again at once, which is what saves work after a crash; but a message that kills its worker every
time would then loop forever, and brokers keep no delivery count. :class:`FleetTask` counts each
delivery of each attempt in the coordination Redis (one ``INCR``), and when one attempt has been
delivered more than ``max_deliveries`` times it writes a dead letter and fails the task instead
of running it again.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from constants import REDIS_KEY_PREFIX
from errors import PoisonMessageError
from tasks.context import coordination_redis, current_settings
from tasks.deadletters import write_dead_letter

__all__ = ["FleetTask", "delivery_key"]


def delivery_key(task_id: str, retries: int) -> str:
    """Redis key counting the deliveries of one attempt of one task."""
    return f"{REDIS_KEY_PREFIX}deliveries:{task_id}:{retries}"


class FleetTask(Task):  # type: ignore[misc]
    """A Celery task that refuses to run a message that killed its worker too often."""

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if not request.called_directly and request.id:
            settings = current_settings()
            key = delivery_key(request.id, request.retries or 0)
            client = coordination_redis()
            pipe = client.pipeline()
            pipe.incr(key)
            # Kept long enough to outlive any redelivery (each comes within a visibility timeout).
            pipe.expire(key, settings.visibility_timeout * (settings.max_deliveries + 2))
            deliveries = int(pipe.execute()[0])
            if deliveries > settings.max_deliveries:
                error = (
                    f"{self.name} was delivered {deliveries} times and its worker died each time "
                    f"(limit {settings.max_deliveries}); it was dead-lettered instead of run again."
                )
                write_dead_letter(
                    task=self.name,
                    task_id=request.id,
                    kwargs=kwargs,
                    error=error,
                    attempts=deliveries - 1,
                )
                client.delete(key)
                raise PoisonMessageError(error)
        return super().__call__(*args, **kwargs)

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Any,
        kwargs: Any,
        einfo: Any,
    ) -> None:
        # The attempt ended (success, failure or retry scheduled): its count is no longer needed.
        if task_id:
            coordination_redis().delete(delivery_key(task_id, self.request.retries or 0))
        super().after_return(status, retval, task_id, args, kwargs, einfo)
