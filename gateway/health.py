"""Readiness of the gateway: can it reach the broker and the store right now?

The broker is probed by doctor's own check (:func:`workers.doctor.broker_check`), with a
shorter timeout; the store by ``SELECT 1``, reported as every entry point reports it
(:func:`workers.runtime.store_unreachable`). No detail holds a password.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from spark_integrations.settings import Settings, hide_password
from spark_integrations.workers.doctor import Check, broker_check
from spark_integrations.workers.runtime import store_unreachable

__all__ = ["CHECK_TIMEOUT", "readiness"]

#: Seconds a readiness check may wait for an answer.
CHECK_TIMEOUT = 2.0


def check_store(sessions: Callable[[], AbstractContextManager[Session]], url: str) -> Check:
    """Run ``SELECT 1`` in the store."""
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except DBAPIError as exc:
        return Check("store", False, str(store_unreachable(url, exc)))
    except Exception as exc:  # any failure to reach it is what the check reports
        return Check("store", False, f"{hide_password(url)} is unreachable ({type(exc).__name__}).")
    return Check("store", True, f"{hide_password(url)} answers.")


def readiness(
    settings: Settings, sessions: Callable[[], AbstractContextManager[Session]]
) -> tuple[bool, dict[str, dict[str, object]]]:
    """Whether the broker and the store answer, and each check's ``{"ok", "detail"}``."""
    checks = [
        broker_check(settings, timeout=CHECK_TIMEOUT),
        check_store(sessions, settings.database_url),
    ]
    return all(c.ok for c in checks), {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}
