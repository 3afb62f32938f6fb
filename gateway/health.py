"""Readiness of the gateway: can it reach the broker and the store right now?

The broker is probed by the check ``doctor`` runs too (:func:`checks.broker_check`), with a
shorter timeout; the store by ``SELECT 1`` (:func:`checks.store_ping`).

The gateway starts and serves whatever state the store and the broker are in, so that an
orchestrator's probes decide rather than a crash loop: ``/healthz`` answers as long as the
process does, ``/readyz`` answers 503 until both answer. What must be brought up first (the
embedded Redis, the store's migrations in embedded mode; in server mode, a store at the newest
migration) is a :class:`Preparation`: tried once before serving, then again in the background
every few seconds until each step has passed. A step still pending fails its check in
``/readyz``.

``/readyz`` is public: its answer names each check and whether it passed, never a host, a user, a
database name or a URL. What a failing check found goes to the gateway's log (URLs masked), and
``spark-integrations doctor`` shows it in full.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from spark_integrations.checks import Check, broker_check, store_ping
from spark_integrations.errors import ConfigurationError
from spark_integrations.redaction import hide_urls
from spark_integrations.settings import Settings

__all__ = ["CHECK_TIMEOUT", "FAILED", "PASSED", "RETRY_EVERY", "Preparation", "readiness"]

#: Seconds a readiness check may wait for an answer.
CHECK_TIMEOUT = 2.0
#: Seconds between two tries of a pending preparation step.
RETRY_EVERY = 5.0
#: What ``/readyz`` says of a check, passed or failed: nothing about where or why.
PASSED = "answers."
FAILED = "does not answer as it should; the gateway's log and `spark-integrations doctor` say why."

log = logging.getLogger("gateway")

#: A preparation step: the check it belongs to (``broker`` or ``store``) and what it runs.
Step = tuple[str, Callable[[], object]]


class Preparation:
    """Steps the gateway brings up before a check counts as passed, retried until each passes.

    A step raising :class:`errors.ConfigurationError` at the first try stops the gateway (a
    bad variable is no outage to wait out); any other failure is logged once per change of
    reason and tried again every :data:`RETRY_EVERY` seconds.
    """

    def __init__(self, steps: Sequence[Step], *, every: float = RETRY_EVERY) -> None:
        self.every = every
        self._pending: dict[str, list[Step]] = {}
        for step in steps:
            self._pending.setdefault(step[0], []).append(step)
        self._said: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def pending(self, check: str) -> bool:
        """Whether a step of ``check`` has not passed yet."""
        return bool(self._pending.get(check))

    @property
    def done(self) -> bool:
        """Whether every step has passed."""
        return not any(self._pending.values())

    def run_once(self, *, first: bool = False) -> bool:
        """Try each pending step once, in order; True when none is left.

        Raises:
            ConfigurationError: on the ``first`` try, a step found the configuration wrong.
        """
        with self._lock:
            for check, steps in self._pending.items():
                while steps:
                    step = steps[0]
                    try:
                        step[1]()
                    except ConfigurationError:
                        if first:
                            raise
                        self._say(step, "failed: the configuration is wrong")
                        break
                    except Exception as exc:  # any failure: the step waits for its next try
                        reason = hide_urls(str(exc).strip() or type(exc).__name__)
                        self._say(step, f"is pending: {reason}")
                        break
                    if id(step) in self._said:
                        log.info("gateway: %s is ready now", check)
                    steps.pop(0)
            return self.done

    def _say(self, step: Step, what: str) -> None:
        """Log what a step found, once per change (a retry loop must not flood the log)."""
        if self._said.get(id(step)) != what:
            self._said[id(step)] = what
            log.warning("gateway: %s %s (tried again every %g s)", step[0], what, self.every)

    def start(self) -> threading.Thread | None:
        """Retry the pending steps in a daemon thread until none is left (None: none is)."""
        if self.done:
            return None
        thread = threading.Thread(target=self._loop, name="gateway-preparation", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """End the retry thread at its next wait."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            if self.run_once():
                return


def readiness(
    settings: Settings,
    sessions: Callable[[], AbstractContextManager[Session]],
    preparation: Preparation | None = None,
) -> tuple[bool, dict[str, dict[str, object]]]:
    """Whether the broker and the store answer, and each check's public ``{"ok", "detail"}``."""
    checks = [
        broker_check(settings, timeout=CHECK_TIMEOUT),
        store_ping(sessions, settings.database_url),
    ]
    if preparation is not None:
        checks = [
            Check(c.name, False, f"{c.name} is not prepared yet (the log says why).")
            if c.ok and preparation.pending(c.name)
            else c
            for c in checks
        ]
    for check in checks:
        if not check.ok:
            log.warning("readiness: %s failed: %s", check.name, hide_urls(check.detail))
    return all(c.ok for c in checks), {
        c.name: {"ok": c.ok, "detail": PASSED if c.ok else FAILED} for c in checks
    }
