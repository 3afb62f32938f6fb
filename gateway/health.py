"""Readiness of the gateway: can it reach the broker and the store right now?

The broker is probed by doctor's own check (:func:`workers.doctor.broker_check`), with a
shorter timeout; the store by ``SELECT 1``. No detail holds a password.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.orm import Session

from settings import Settings, hide_password
from workers.doctor import Check, broker_check

__all__ = ["CHECK_TIMEOUT", "readiness"]

#: Seconds a readiness check may wait for an answer.
CHECK_TIMEOUT = 2.0


def _reason(exc: BaseException, url: str) -> str:
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    password = urlsplit(url).password
    if password:
        reason = reason.replace(password, "***")
    return reason[:300]


def check_store(sessions: Callable[[], AbstractContextManager[Session]], url: str) -> Check:
    """Run ``SELECT 1`` in the store."""
    shown = hide_password(url)
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach it is what the check reports
        orig = getattr(exc, "orig", None) or exc
        return Check("store", False, f"{shown} is unreachable ({_reason(orig, url)}).")
    return Check("store", True, f"{shown} answers.")


def readiness(
    settings: Settings, sessions: Callable[[], AbstractContextManager[Session]]
) -> tuple[bool, dict[str, dict[str, object]]]:
    """Whether the broker and the store answer, and each check's ``{"ok", "detail"}``."""
    checks = [
        broker_check(settings, timeout=CHECK_TIMEOUT),
        check_store(sessions, settings.database_url),
    ]
    return all(c.ok for c in checks), {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}
