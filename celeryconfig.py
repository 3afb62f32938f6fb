"""Celery configuration of the fleet, set for not losing work.

Loaded by ``workers.app`` with ``config_from_object("celeryconfig")``; every value comes from
:func:`settings.load`, so the environment stays the one place to configure the fleet.

Choices, and why (see NOTES.md in the contract for the traps behind them):

* ``task_acks_late`` with ``task_reject_on_worker_lost``: a message is acknowledged after its task
  ends, and a task whose pool process died is handed out again at once. Brokers count no
  deliveries, so ``tasks.base.FleetTask`` counts them in Redis and dead-letters a message that
  killed its worker ``max_deliveries`` times (a poison message must not loop forever).
* ``worker_prefetch_multiplier = 1``: a worker holds no more messages than it runs, so a lost
  worker strands as little as possible and long tasks do not block short ones.
* Reliable fetch on Redis (:mod:`broker`): a worker takes a message and records it as its own
  in one atomic step, so a worker killed at any instant loses nothing; the messages of a worker
  that stopped proving alive come back after ``reclaim_after`` seconds (1 min by default), and
  a living worker's are never handed to another. ``SPARK_INTEGRATIONS_BROKER_FETCH=kombu``
  goes back to kombu's own fetch.
* Visibility timeout: on kombu's own fetch, a message taken by a worker that died unacked comes
  back after ``visibility_timeout`` seconds. It bounds recovery time, so it is short (15 min by
  default), and the hard task time limit stays below it (5 min) so a running task is never
  handed to a second worker. The same value is set for the result backend, and the unacked scan
  runs every few seconds rather than the transport's default of every 100 s.
* ``worker_cancel_long_running_tasks_on_connection_loss``: without it a late-ack task can run
  twice after the worker loses the broker connection. ``broker_connection_retry_on_startup`` is
  set explicitly because its code default differs from its documentation.
* JSON only, in and out: tasks carry ids, never objects nor secrets.
"""

from __future__ import annotations

from celery.schedules import crontab as _crontab
from kombu.entity import Exchange, Queue

import spark_integrations.settings as _settings
from spark_integrations.broker import worker_broker_url as _worker_broker_url
from spark_integrations.constants import (
    ALL_QUEUES,
    QUEUE_MAINTENANCE,
    REFRESH_TOKENS_EVERY,
    TASK_PURGE_HISTORY,
    TASK_REFRESH_TOKENS,
    TASK_RELEASE_PARKED,
    TASK_ROUTES,
    TASK_SWEEP_DELIVERIES,
    TASK_SWEEP_WEBHOOKS,
)

_s = _settings.load()

broker_url = _worker_broker_url(_s.broker_url, _s.broker_fetch)
result_backend = _s.result_backend

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
timezone = "UTC"
enable_utc = True

task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure_or_timeout = True
worker_prefetch_multiplier = 1
task_time_limit = _s.task_time_limit
task_soft_time_limit = max(1, int(_s.task_time_limit * 0.9))

broker_connection_retry = True
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
worker_cancel_long_running_tasks_on_connection_loss = True

if _s.broker_is_amqp:
    # Publisher confirms: send_task returns only once RabbitMQ has taken the message.
    broker_transport_options: dict[str, object] = {"confirm_publish": True}
else:
    broker_transport_options = {
        "visibility_timeout": _s.visibility_timeout,
        "unacked_restore_interval": max(1, min(10, _s.visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
        "reclaim_after": _s.reclaim_after,
    }
result_backend_transport_options = {"visibility_timeout": _s.visibility_timeout}
result_backend_always_retry = True
result_backend_max_retries = 10
result_expires = 7 * 24 * 3600
# Results carry no task arguments (they may hold a caller's params).
result_extended = False

# Plain queues, each on a direct exchange of its own name: exactly what Celery declares for a
# queue it has never heard of, so spark's send_task(..., queue=NAME) and the fleet agree.
task_queues = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ALL_QUEUES
)
task_default_queue = QUEUE_MAINTENANCE
task_default_exchange = QUEUE_MAINTENANCE
task_default_routing_key = QUEUE_MAINTENANCE
task_routes = TASK_ROUTES
task_create_missing_queues = True

# Task events cost three extra broker messages per task, so workers start with them off; Flower
# switches them on in every worker while it runs (its --enable_events, on by default), which is
# all it needs to show the fleet at work. The fleet's own sends announce themselves.
worker_send_task_events = False
task_send_sent_event = True

imports = (
    "spark_integrations.tasks.maintenance",
    "spark_integrations.tasks.calls",
    "spark_integrations.tasks.parking",
    "spark_integrations.tasks.syncs",
    "spark_integrations.tasks.deliveries",
    "spark_integrations.tasks.webhook_sweep",
    "spark_integrations.tasks.webhooks",
)
beat_schedule_filename = str(_s.home / "celerybeat-schedule")
beat_schedule: dict[str, dict[str, object]] = {
    # Parked calls (waits longer than a safe countdown) go back to their queue once due.
    "release-parked-calls": {"task": TASK_RELEASE_PARKED, "schedule": 5.0},
    # OAuth tokens about to expire, or left unrefreshed too long, are renewed ahead of calls.
    "refresh-tokens": {"task": TASK_REFRESH_TOKENS, "schedule": REFRESH_TOKENS_EVERY},
    # History past SPARK_INTEGRATIONS_RETENTION_DAYS is deleted daily, at a quiet hour (UTC).
    "purge-history": {"task": TASK_PURGE_HISTORY, "schedule": _crontab(hour=3, minute=17)},
    # Event deliveries due (retries over hours, first attempts the broker did not take) are sent.
    "sweep-deliveries": {"task": TASK_SWEEP_DELIVERIES, "schedule": 5.0},
    # Stored webhook events whose task the broker never took (it was down) are sent again.
    "sweep-webhooks": {"task": TASK_SWEEP_WEBHOOKS, "schedule": 30.0},
}
