"""Readiness checks of the gateway: can it reach the broker and the store right now?

Each check is short (a couple of seconds at most) and its detail never holds a password:
URLs go through :func:`settings.hide_password`, and a library's message is cut to its first
line with the password, if any, removed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.orm import Session

from settings import hide_password

__all__ = ["CHECK_TIMEOUT", "Check", "check_broker", "check_store"]

#: Seconds a readiness check may wait for an answer.
CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Check:
    """The outcome of one readiness check."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of ``/readyz``'s ``checks`` entries."""
        return {"ok": self.ok, "detail": self.detail}


def _reason(exc: BaseException, url: str) -> str:
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    password = urlsplit(url).password
    if password:
        reason = reason.replace(password, "***")
    return reason[:300]


def check_broker(url: str, timeout: float = CHECK_TIMEOUT) -> Check:
    """PING a Redis broker, or open and close a connection to an AMQP one."""
    shown = hide_password(url)
    scheme = urlsplit(url).scheme
    try:
        if scheme in ("amqp", "amqps"):
            from kombu.connection import Connection

            with Connection(url, connect_timeout=timeout) as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        else:
            import redis

            client_url = "unix://" + url.removeprefix("redis+socket://")
            client = redis.Redis.from_url(
                client_url if scheme == "redis+socket" else url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
            try:
                client.ping()
            finally:
                client.close()
    except Exception as exc:  # any failure to reach it is what the check reports
        return Check("broker", False, f"{shown} is unreachable ({_reason(exc, url)}).")
    return Check("broker", True, f"{shown} answers.")


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
