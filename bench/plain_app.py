"""Plain Celery, the baseline: the same request made with ``requests`` in a plain task.

Celery's defaults plus JSON, on the same broker as the fleet. ``plain_call`` has no rate limit;
``plain_call_50`` and ``plain_call_25`` carry Celery's own ``rate_limit`` (per worker process). A
429 is retried after the provider's ``Retry-After``, as a careful plain task would.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery, Task

app = Celery(
    "plain",
    broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_default_queue="bench.plain",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_session = requests.Session()


def _post(task: Task, url: str, text: str, api_key: str) -> dict[str, Any]:
    response = _session.post(
        url + "/v1/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=(3.05, 30),
    )
    if response.status_code == 429:
        wait = float(response.headers.get("Retry-After", "1"))
        raise task.retry(countdown=wait, max_retries=None)
    response.raise_for_status()
    return {"ok": True, "data": response.json()}


@app.task(bind=True, name="bench.plain_call")
def plain_call(self: Task, url: str, text: str, api_key: str) -> dict[str, Any]:
    """The request, no limit."""
    return _post(self, url, text, api_key)


@app.task(bind=True, name="bench.plain_call_50", rate_limit="50/s")
def plain_call_50(self: Task, url: str, text: str, api_key: str) -> dict[str, Any]:
    """The request under Celery's rate_limit of 50/s per worker."""
    return _post(self, url, text, api_key)


@app.task(bind=True, name="bench.plain_call_25", rate_limit="25/s")
def plain_call_25(self: Task, url: str, text: str, api_key: str) -> dict[str, Any]:
    """The request under Celery's rate_limit of 25/s per worker."""
    return _post(self, url, text, api_key)
