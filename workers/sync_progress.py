"""``syncs run --wait``: wait for a sync task's result while following its run in the store.

A line updated in place when stderr is a terminal, else a progress line at most every
:data:`PROGRESS_EVERY` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from sqlalchemy import select

from spark_integrations.errors import IntegrationError, SyncFailedError, WaitTimeoutError

__all__ = ["POLL_SECONDS", "PROGRESS_EVERY", "wait_for_run"]

#: Seconds between looks at the store (and at the result) while ``syncs run --wait`` waits.
POLL_SECONDS = 0.5
#: Seconds between progress lines when stderr is not a terminal.
PROGRESS_EVERY = 5.0
SPINNER = "|/-\\"


def _progress(rt: Any, task_id: str) -> dict[str, Any] | None:
    """The newest run of the task, as far as the store knows (None before a worker starts it)."""
    from spark_integrations.store import SyncRun

    try:
        with rt.session() as session:
            found = session.scalars(
                select(SyncRun)
                .where(SyncRun.task_id == task_id)
                .order_by(SyncRun.created_at.desc())
                .limit(1)
            ).first()
            if found is None:
                return None
            return {
                "run_id": found.id,
                "status": found.status,
                "pages": found.pages,
                "records": found.records,
                "retries": found.retries,
            }
    except IntegrationError:  # a store hiccup must not end the wait; the next look may work
        return None


def _progress_text(sync_id: str, seen: dict[str, Any] | None) -> str:
    if seen is None:
        return f"sync {sync_id}: queued, waiting for a worker"
    return (
        f"sync {sync_id} run {seen['run_id']}: {seen['status']}, {seen['pages']:,} pages, "
        f"{seen['records']:,} records, {seen['retries']:,} retries"
    )


def wait_for_run(rt: Any, result: Any, sync_id: str, timeout: float | None) -> dict[str, Any]:
    """Wait for a sync task's result, showing its progress on stderr."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    tty = sys.stderr.isatty()
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    last_text, last_shown, tick = "", -PROGRESS_EVERY, 0
    try:
        while True:
            try:
                answer = result.get(timeout=POLL_SECONDS)
                break
            except CeleryTimeout:
                pass
            except Exception as exc:  # the task's own failure, rebuilt by Celery
                message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SyncFailedError(
                    f"sync {sync_id} failed: {message.rstrip('.')}; "
                    f"`spark-integrations syncs status {sync_id}` shows its runs."
                ) from None
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise WaitTimeoutError(
                    f"sync {sync_id} (task {result.id}) did not finish within {timeout:g} s; "
                    f"it is still queued or running (`syncs status {sync_id}` follows it)."
                )
            text = _progress_text(sync_id, _progress(rt, result.id))
            if tty:
                tick += 1
                click.echo(f"\r{SPINNER[tick % len(SPINNER)]} {text}\x1b[K", err=True, nl=False)
            elif text != last_text and now - last_shown >= PROGRESS_EVERY:
                click.echo(text, err=True)
                last_text, last_shown = text, now
    finally:
        if tty and tick:
            click.echo("\r\x1b[K", err=True, nl=False)
    if not isinstance(answer, dict):
        raise SyncFailedError(f"sync {sync_id} answered {answer!r}, not a result.")
    return answer
