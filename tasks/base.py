"""The base class of every fleet task: counts deliveries and stops poison messages.

With late acks and ``task_reject_on_worker_lost`` a task whose pool process died is handed out
again at once, which is what saves work after a crash; but a message that kills its worker every
time would then loop forever, and brokers keep no delivery count. :class:`FleetTask` counts each
delivery of each attempt in the coordination Redis (one ``INCR``), and when one attempt has been
delivered more than ``max_deliveries`` times it writes a dead letter and fails the task instead
of running it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery import Task

from spark_integrations.constants import REDIS_DELIVERY_PREFIX
from spark_integrations.errors import PoisonMessageError
from spark_integrations.tasks.context import coordination_redis, current_settings
from spark_integrations.tasks.deadletters import write_dead_letter

__all__ = ["FleetTask", "delivery_key", "record_failure"]

log = logging.getLogger("spark_integrations.tasks")


def record_failure(
    *, task: str, task_id: str | None, kwargs: Mapping[str, Any], error: str, attempts: int
) -> str:
    """Give up on a task: one dead letter and one log line, carrying the same fields.

    The error is the sentence the task fails with; a provider's names its connector, the status
    and whether the request may have been applied (:class:`errors.ProviderError`). Returns the
    dead letter's id.
    """
    letter = write_dead_letter(
        task=task, task_id=task_id, kwargs=kwargs, error=error, attempts=attempts
    )
    ids = {k: kwargs.get(k) for k in ("connection_id", "action", "sync_id")}
    named = "".join(f" {k}={v!r}" for k, v in ids.items() if isinstance(v, str))
    log.error(
        "dead letter %s: task=%s task_id=%r%s attempts=%d error=%s",
        letter, task, task_id, named, attempts, " ".join(error.split()),
    )  # fmt: skip
    return letter


def delivery_key(task_id: str, retries: int) -> str:
    """Redis key counting the deliveries of one attempt of one task."""
    return f"{REDIS_DELIVERY_PREFIX}{task_id}:{retries}"


class FleetTask(Task):  # type: ignore[misc]
    """A Celery task that refuses to run a message that killed its worker too often."""

    abstract = True

    #: A task that counts its own delivery (see :meth:`count_delivery`) in a round trip it
    #: makes anyway, before anything that could kill its worker, sets this to True.
    counts_own_delivery = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if not request.called_directly and request.id and not self.counts_own_delivery:
            pipe = coordination_redis().pipeline()
            self.count_delivery(pipe)
            self.check_delivery(int(pipe.execute()[0]), kwargs)
        return super().__call__(*args, **kwargs)

    def count_delivery(self, pipe: Any) -> None:
        """Queue the count of this delivery on ``pipe`` (two commands; the first's reply counts)."""
        settings = current_settings()
        key = delivery_key(self.request.id, self.request.retries or 0)
        pipe.incr(key)
        # Kept long enough to outlive any redelivery: each comes within a visibility timeout
        # (kombu's fetch) or within one and a half reclaim times (reliable fetch: the dead
        # worker's alive key expires, then a living worker's next reclaim gives it back).
        between = max(settings.visibility_timeout, 2 * settings.reclaim_after)
        pipe.expire(key, between * (settings.max_deliveries + 2))

    def check_delivery(self, deliveries: int, kwargs: dict[str, Any]) -> None:
        """Dead-letter and fail a message delivered more often than the limit allows."""
        settings = current_settings()
        if deliveries <= settings.max_deliveries:
            return
        request = self.request
        error = (
            f"{self.name} was delivered {deliveries} times and its worker died each time "
            f"(limit {settings.max_deliveries}); it was dead-lettered instead of run again."
        )
        record_failure(
            task=self.name,
            task_id=request.id,
            kwargs=kwargs,
            error=error,
            attempts=deliveries - 1,
        )
        coordination_redis().delete(delivery_key(request.id, request.retries or 0))
        raise PoisonMessageError(error)

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
        # A task that already deleted it on its own last round trip says so on its request.
        if task_id and not getattr(self.request, "delivery_count_cleared", False):
            coordination_redis().delete(delivery_key(task_id, self.request.retries or 0))
        super().after_return(status, retval, task_id, args, kwargs, einfo)
