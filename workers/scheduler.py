"""Beat's scheduler: the static ``beat_schedule`` plus the sync definitions kept in the store.

:class:`StoreScheduler` is Celery's :class:`~celery.beat.PersistentScheduler` (so the jobs of
``celeryconfig.beat_schedule`` run as before) that also looks at the store every second, on the
whole second of the clock (cron times are whole minutes, so a cron sync is sent when due):

* **Due syncs.** :func:`store.syncs.claim_due` moves each due sync's ``next_run_at`` on by one
  period with a compare-and-set on the due time it read; the claims are committed, and only then
  is ``integrations.sync`` sent for each. Of two (or ten) beats reading the same due time only one
  moves it on, so running several beats for availability never doubles a period. The store is the
  single source of truth: a sync added, changed, paused or removed at run time is seen on the next
  tick, without restarting beat. The price of committing before sending: a broker error between
  the two loses that one trigger (logged); the next period's run reads everything changed since
  the cursor anyway.
* **Runs whose worker was lost.** A run whose lease (``heartbeat_at``) went stale
  (:func:`store.runs.stale_runs`) is sent again under its own task id, so whoever waits on that id
  gets the result; the task takes the run over under its lease, so a duplicate send is harmless.
  Each such run is sent at most once per lease (``SPARK_INTEGRATIONS_SYNC_LEASE``, 60 s by
  default) by one beat: sent again, it holds a fresh lease, so it is only stale again once that
  much time has passed without a sign of life.

An error of the store or the broker during a tick is logged in one line and beat goes on.

Why not an existing scheduler: django-celery-beat and celery-sqlalchemy-scheduler keep schedules
in a database, but each beat process keeps its own view of what is due and sends it, with no
atomic claim of a due run, so two beats send every run twice (django-celery-beat #337, #576;
celery #2856). RedBeat keeps the schedule in Redis, not in the fleet's store, and prevents doubles
by letting a single beat hold a Redis lock, not by claiming each run: a beat that stalls past the
lock timeout and a second one can both send. Here every period is claimed in the store itself.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from celery.beat import PersistentScheduler
from kombu.exceptions import KombuError
from redis import RedisError
from sqlalchemy.exc import SQLAlchemyError

from spark_integrations.constants import QUEUE_BACKFILLS, QUEUE_SYNCS, TASK_SYNC
from spark_integrations.errors import IntegrationError, ServiceError
from spark_integrations.store.runs import stale_runs
from spark_integrations.store.syncs import claim_due
from spark_integrations.tasks.context import current_settings, store_session

__all__ = ["SYNC_TICK", "StoreScheduler"]

log = logging.getLogger(__name__)

#: Seconds between two looks at the store (the finest resolution of a sync's schedule).
SYNC_TICK = 1.0
#: While the store or broker stays unreachable, the same error is logged again this often.
ERROR_LOG_EVERY = 60.0
#: Errors of the outside world that a tick survives: logged in one line, no traceback.
EXPECTED_ERRORS = (SQLAlchemyError, KombuError, RedisError, OSError, IntegrationError)


class StoreScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's persistent scheduler that also sends the syncs the store says are due."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._next_store_tick = 0.0
        self._resent: dict[str, float] = {}
        self._last_error: tuple[str, float] | None = None
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Look at the store at each whole second of the clock, then run beat's own tick.

        Returns the seconds beat may sleep: no longer than until the next look at the store.
        Whole seconds, because cron times are whole minutes: a cron sync is sent right when due.
        """
        now = time.time()
        # A clock set back would leave the next look far ahead: start again from now.
        if now >= self._next_store_tick or self._next_store_tick - now > SYNC_TICK:
            self._next_store_tick = (math.floor(now / SYNC_TICK) + 1) * SYNC_TICK
            self.store_tick()
        interval = float(super().tick(*args, **kwargs))
        return max(0.0, min(interval, self._next_store_tick - time.time()))

    def store_tick(self) -> None:
        """Send the due syncs and the runs left behind; an error is logged, never raised."""
        try:
            sent = self._send_due() + self._resend_stale()
        except EXPECTED_ERRORS as exc:
            own = isinstance(exc, IntegrationError)
            self._log_error(
                _first_line(exc) if own else f"{type(exc).__name__}: {_first_line(exc)}"
            )
            return
        except Exception as exc:  # a bug: show where, but keep the static schedule running
            self._log_error(f"{type(exc).__name__}: {_first_line(exc)}", traceback=True)
            return
        if self._last_error is not None:
            log.info("beat: sync scheduling works again.")
            self._last_error = None
        if sent:
            log.debug("beat: %d sync task(s) sent.", sent)

    def _send_due(self) -> int:
        with store_session() as session:
            claimed = claim_due(session)
        # Committed: no other beat can claim these periods now. Sent only after that.
        for position, sync_id in enumerate(claimed):
            try:
                self.app.send_task(
                    TASK_SYNC, kwargs={"sync_id": sync_id, "full_refresh": False}, queue=QUEUE_SYNCS
                )
            except EXPECTED_ERRORS as exc:
                lost = ", ".join(claimed[position:])
                raise ServiceError(
                    f"could not send the due run of sync(s) {lost}, which wait for their next "
                    f"period: {type(exc).__name__}: {_first_line(exc)}"
                ) from exc
            log.info("beat: sync %s is due; sent %s.", sync_id, TASK_SYNC)
        return len(claimed)

    def _resend_stale(self) -> int:
        lease = float(current_settings().sync_lease)
        now = time.monotonic()
        self._resent = {k: t for k, t in self._resent.items() if now - t < lease}
        with store_session() as session:
            runs = [
                (run.id, run.sync_id, run.full_refresh, run.task_id)
                for run in stale_runs(session, lease=lease)
                if run.id not in self._resent
            ]
        for run_id, sync_id, full_refresh, task_id in runs:
            self.app.send_task(
                TASK_SYNC,
                kwargs={"sync_id": sync_id, "full_refresh": full_refresh, "run_id": run_id},
                task_id=task_id,
                queue=QUEUE_BACKFILLS if full_refresh else QUEUE_SYNCS,
            )
            self._resent[run_id] = now
            log.warning(
                "beat: run %s of sync %s lost its worker (lease stale); sent again.",
                run_id,
                sync_id,
            )
        return len(runs)

    def _log_error(self, message: str, *, traceback: bool = False) -> None:
        """One line per error, repeated at most every :data:`ERROR_LOG_EVERY` s while it lasts."""
        now = time.monotonic()
        last = self._last_error
        if last is None or last[0] != message or now - last[1] >= ERROR_LOG_EVERY:
            log.error(
                "beat: sync scheduling failed (%s); trying again every %g s.",
                message,
                SYNC_TICK,
                exc_info=traceback,
            )
            self._last_error = (message, now)

    @property
    def info(self) -> str:
        """The line beat's banner shows for this scheduler."""
        return f"{super().info}\n    . syncs -> from the store, every {SYNC_TICK:g} s"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else ""
