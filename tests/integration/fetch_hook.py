"""Loaded into a test's worker (``worker -- --include=tests.integration.fetch_hook``): the worker
main process kills its whole process group right after it fetched a message the test marked.

Both fetches hand a message they took to kombu's ``Transport._deliver`` before anything else
happens to it: reliable fetch (``broker.reliable.Channel.take``) once its take script popped the
message and recorded it as held, kombu's own (``_brpop_read``) once ``BRPOP`` popped it and
before kombu records it in its ``unacked`` hash. Dying there is a host lost at the worst
instant: the message has left its list and no task has started. The window is widened by
wrapping that method in the worker alone, so nothing in the fleet's code exists for the test.

A test arms the hook for one task name by setting :func:`mark_key` in the coordination Redis;
the first worker main process to fetch a message of that task deletes the key (so the hook
fires once, whatever the number of workers), appends what it fetched to :data:`FIRED_KEY`, then
SIGKILLs its process group. The wrapper is installed only in a process whose environment has
:data:`ENV` set to ``1`` (the test's workers), so importing the names here changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import redis
from kombu.transport.virtual import base

from spark_integrations import settings

__all__ = ["ENV", "FIRED_KEY", "install", "mark_key"]

#: The environment variable that makes importing this module install the wrapper.
ENV = "TEST_FETCH_HOOK"
#: A list of the messages fetched by processes that then killed their group: JSON objects with
#: the task name, task id, queue and the main process's pid.
FIRED_KEY = "test-fetch-kill:fired"


def mark_key(task: str) -> str:
    """The key that arms the hook for ``task`` (a task name such as ``integrations.call``)."""
    return f"test-fetch-kill:{task}"


_client: redis.Redis | None = None


def _coordination() -> redis.Redis:
    # Made on first use, in the main process (after the pool was forked).
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.load().redis_url)
    return _client


def install() -> None:
    """Wrap ``Transport._deliver`` of kombu's virtual transports (both fetches' last step)."""
    original: Any = base.Transport._deliver
    if getattr(original, "fetch_hook", False):
        return

    def deliver(self: Any, message: Any, queue: str) -> Any:
        headers = message.get("headers") if isinstance(message, dict) else None
        task = headers.get("task") if isinstance(headers, dict) else None
        if isinstance(headers, dict) and isinstance(task, str):
            client = _coordination()
            if client.delete(mark_key(task)):
                fired = {"task": task, "id": headers.get("id"), "queue": queue, "pid": os.getpid()}
                client.rpush(FIRED_KEY, json.dumps(fired))
                os.killpg(os.getpgid(0), signal.SIGKILL)
        return original(self, message, queue)

    deliver.fetch_hook = True  # type: ignore[attr-defined]
    base.Transport._deliver = deliver  # type: ignore[method-assign]


if os.environ.get(ENV) == "1":
    install()
