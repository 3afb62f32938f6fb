"""Readiness of the gateway: can it reach the broker and the store right now?

The broker is probed by the check ``doctor`` runs too (:func:`checks.broker_check`), with a
shorter timeout; the store by ``SELECT 1`` (:func:`checks.store_ping`).

``/readyz`` is public: its answer names each check and whether it passed, never a host, a user, a
database name or a URL. What a failing check found goes to the gateway's log (URLs masked), and
``spark-integrations doctor`` shows it in full.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from spark_integrations.checks import broker_check, store_ping
from spark_integrations.redaction import hide_urls
from spark_integrations.settings import Settings

__all__ = ["CHECK_TIMEOUT", "FAILED", "PASSED", "readiness"]

#: Seconds a readiness check may wait for an answer.
CHECK_TIMEOUT = 2.0
#: What ``/readyz`` says of a check, passed or failed: nothing about where or why.
PASSED = "answers."
FAILED = "does not answer as it should; the gateway's log and `spark-integrations doctor` say why."

log = logging.getLogger("gateway")


def readiness(
    settings: Settings, sessions: Callable[[], AbstractContextManager[Session]]
) -> tuple[bool, dict[str, dict[str, object]]]:
    """Whether the broker and the store answer, and each check's public ``{"ok", "detail"}``."""
    checks = [
        broker_check(settings, timeout=CHECK_TIMEOUT),
        store_ping(sessions, settings.database_url),
    ]
    for check in checks:
        if not check.ok:
            log.warning("readiness: %s failed: %s", check.name, hide_urls(check.detail))
    return all(c.ok for c in checks), {
        c.name: {"ok": c.ok, "detail": PASSED if c.ok else FAILED} for c in checks
    }
