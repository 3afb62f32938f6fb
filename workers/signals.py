"""Worker signal handlers: per-process resources after fork, and the fields of log lines.

* ``worker_process_init``: a pool child drops the caches it inherited (:mod:`forks`).
* ``task_prerun`` / ``task_postrun``: each task execution opens a scope of log fields
  (:func:`logs.task_scope`: the task's id, name and retries, and the ids among its kwargs) and
  closes it once Celery has logged the task's outcome, so Celery's own "succeeded" or "retry"
  line carries them too.
* ``after_setup_logger`` / ``after_setup_task_logger``: with ``SPARK_INTEGRATIONS_LOG_FORMAT=json``
  the handlers Celery has just set up (root, task and multiprocessing loggers, in the worker and
  in beat) write JSON lines; pool children inherit them. Celery still decides where lines go
  and at which level: only the format changes. Text (the default) is left as Celery makes it.
"""

from __future__ import annotations

import logging
from contextvars import Token
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_after_setup,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)
from celery.utils.log import get_multiprocessing_logger

from spark_integrations import logs, metrics
from spark_integrations.forks import reset_after_fork

__all__ = ["connect"]

log = logging.getLogger("spark_integrations.workers")

# The open log scope of each task running in this process, by task id.
_scopes: dict[str, Token[Any]] = {}


def _json() -> bool:
    from spark_integrations.tasks.context import current_settings

    return current_settings().operations.log_format == "json"


def _on_process_init(**_: Any) -> None:
    # A pool child starts with its parent's engines, sessions and clients: every per-process
    # cache of the fleet is reset in one place (forks), so the child opens its own on first use.
    reset_after_fork()


def _on_process_shutdown(**_: Any) -> None:
    # A pool child ends with os._exit (no atexit): what it counted since the last flush is
    # sent now (metrics).
    metrics.flush()


def _on_task_prerun(
    task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any
) -> None:
    request = getattr(task, "request", None)
    token = logs.task_scope(
        task_id, getattr(task, "name", None), getattr(request, "retries", None), kwargs
    )
    if task_id:
        _scopes[task_id] = token


def _on_task_postrun(task_id: str | None = None, **_: Any) -> None:
    logs.end_task_scope(_scopes.pop(task_id, None) if task_id else None)


def _on_setup_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    if not _json():
        return
    if logger is not None:
        logs.use_json(logger)
    multiprocessing = get_multiprocessing_logger()
    if multiprocessing is not None:
        logs.use_json(multiprocessing)


def _on_worker_setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
    # The banner Celery prints (several lines of text) is left out in the JSON format: its
    # facts that matter come as one line instead.
    if not _json() or instance is None:
        return
    queues = sorted(instance.app.amqp.queues.consume_from or ())
    log.info(
        "worker %s starting: queues %s, concurrency %s",
        sender,
        ",".join(queues),
        getattr(instance, "concurrency", "?"),
    )


def connect() -> None:
    """Connect the fleet's handlers to Celery's signals (idempotent)."""
    worker_process_init.connect(_on_process_init, weak=False, dispatch_uid="spark-int-proc-init")
    worker_process_shutdown.connect(
        _on_process_shutdown, weak=False, dispatch_uid="spark-int-proc-shutdown"
    )
    task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="spark-int-log-prerun")
    task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid="spark-int-log-postrun")
    after_setup_logger.connect(_on_setup_logger, weak=False, dispatch_uid="spark-int-log-root")
    after_setup_task_logger.connect(_on_setup_logger, weak=False, dispatch_uid="spark-int-log-task")
    celeryd_after_setup.connect(_on_worker_setup, weak=False, dispatch_uid="spark-int-log-banner")
