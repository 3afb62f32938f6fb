"""Readiness of the gateway: can it reach the broker and the store right now?

The broker is probed by the check ``doctor`` runs too (:func:`checks.broker_check`), with a
shorter timeout; the store by ``SELECT 1`` (:func:`checks.store_ping`). No detail holds a
password.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from spark_integrations.checks import broker_check, store_ping
from spark_integrations.settings import Settings

__all__ = ["CHECK_TIMEOUT", "readiness"]

#: Seconds a readiness check may wait for an answer.
CHECK_TIMEOUT = 2.0


def readiness(
    settings: Settings, sessions: Callable[[], AbstractContextManager[Session]]
) -> tuple[bool, dict[str, dict[str, object]]]:
    """Whether the broker and the store answer, and each check's ``{"ok", "detail"}``."""
    checks = [
        broker_check(settings, timeout=CHECK_TIMEOUT),
        store_ping(sessions, settings.database_url),
    ]
    return all(c.ok for c in checks), {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}
