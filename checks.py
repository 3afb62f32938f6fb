"""Health checks shared by ``doctor`` and the gateway's ``/readyz``: each says what it found.

A neutral module beside :mod:`settings`: the command line (:mod:`workers.doctor`) and the
gateway (:mod:`gateway.health`) both use it, and neither imports the other. No detail holds a
password (:func:`settings.hide_password`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

import redis
from kombu.connection import Connection as KombuConnection
from sqlalchemy import text
from sqlalchemy.orm import Session

from spark_integrations.broker.reliable import POLL_WITHOUT_WAKE
from spark_integrations.errors import StoreError
from spark_integrations.settings import Settings, hide_password

__all__ = [
    "TIMEOUT",
    "Check",
    "broker_check",
    "broker_fetch_check",
    "redis_check",
    "store_ping",
]

#: Seconds a check waits for an answer unless told otherwise.
TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    """The outcome of one check: its name, whether it passed, and what it found.

    A ``warning`` passed (``ok``) but found something the operator should change: the fleet
    works, less well than it could.
    """

    name: str
    ok: bool
    detail: str
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The check as ``doctor --json`` prints it."""
        return asdict(self)


def _redis_client(url: str, timeout: float) -> redis.Redis:
    """A client of the Redis at ``url`` (redis-py knows unix://, not redis+socket://)."""
    return redis.Redis.from_url(
        url.replace("redis+socket://", "unix://"),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def redis_check(name: str, url: str, *, need_noeviction: bool, timeout: float = TIMEOUT) -> Check:
    """PING a Redis (and read its eviction policy when ``need_noeviction``)."""
    try:
        client = _redis_client(url, timeout)
        with client:
            client.ping()
            policy = "unknown"
            # CONFIG may be disabled on a managed Redis.
            with contextlib.suppress(redis.ResponseError):
                policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy"))
    except (redis.RedisError, OSError) as exc:
        return Check(name, False, f"{hide_password(url)} is unreachable ({exc}).")
    if need_noeviction and policy not in ("noeviction", "unknown"):
        return Check(
            name,
            False,
            f"{hide_password(url)} answers but evicts keys (maxmemory-policy {policy}); "
            "set it to noeviction or queued work can be lost.",
        )
    return Check(name, True, f"{hide_password(url)} answers (maxmemory-policy {policy}).")


def broker_check(s: Settings, *, timeout: float = TIMEOUT) -> Check:
    """PING a Redis broker, or open a connection to an AMQP one."""
    if not s.broker_is_amqp:
        return redis_check("broker", s.broker_url, need_noeviction=True, timeout=timeout)
    try:
        with KombuConnection(s.broker_url, connect_timeout=timeout) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # kombu raises a variety of transport errors
        return Check("broker", False, f"{hide_password(s.broker_url)} is unreachable ({exc}).")
    return Check("broker", True, f"{hide_password(s.broker_url)} accepts connections.")


def broker_fetch_check(s: Settings, *, timeout: float = TIMEOUT) -> Check | None:
    """How workers take messages from a Redis broker, when a dead worker's come back, and under
    reliable fetch whether the broker sends the keyspace notifications workers wake on (None on
    AMQP, whose broker hands back a dead consumer's messages itself).

    Missing notifications are a warning, not a failure: workers turn them on themselves when
    the broker allows ``CONFIG SET``, and otherwise take every :data:`POLL_WITHOUT_WAKE` s.
    """
    if s.broker_is_amqp:
        return None
    if s.broker_fetch != "reliable":
        return Check(
            "broker_fetch",
            True,
            f"kombu (SPARK_INTEGRATIONS_BROKER_FETCH={s.broker_fetch}): a message a dead worker "
            f"left unacknowledged comes back after the visibility timeout ({s.visibility_timeout}"
            " s), but one taken by a worker killed before it recorded it is lost; "
            "SPARK_INTEGRATIONS_BROKER_FETCH=reliable loses none.",
        )
    # Its alive key expires at most reclaim_after after it died, and a living worker reclaims
    # every half of that.
    mode = (
        f"reliable: a dead worker's messages come back about {s.reclaim_after} s after it died "
        f"(at most {s.reclaim_after * 1.5:g} s, while another worker lives; "
        "SPARK_INTEGRATIONS_RECLAIM_AFTER)"
    )
    try:
        client = _redis_client(s.broker_url, timeout)
        with client:
            answer = client.config_get("notify-keyspace-events")
        flags = str(answer.get("notify-keyspace-events") or "")
    except redis.ResponseError as exc:  # CONFIG refused: a managed Redis, or renamed away
        return Check(
            "broker_fetch",
            True,
            f"{mode}; whether the broker sends keyspace notifications could not be read "
            f"(CONFIG GET refused: {exc}): workers cannot read it either, so they wake on them "
            f"if the broker sends them and also take every {POLL_WITHOUT_WAKE:g} s.",
            warning=True,
        )
    except (redis.RedisError, OSError) as exc:
        return Check(
            "broker_fetch", False, f"{hide_password(s.broker_url)} is unreachable ({exc})."
        )
    missing = ("" if "K" in flags else "K") + ("" if "l" in flags or "A" in flags else "l")
    if not missing:
        return Check(
            "broker_fetch",
            True,
            f"{mode}; the broker sends the keyspace notifications workers wake on "
            f"(notify-keyspace-events {flags}).",
        )
    return Check(
        "broker_fetch",
        True,
        f"{mode}; the broker sends no keyspace notifications of lists (notify-keyspace-events "
        f"'{flags}'): workers turn them on when the broker allows CONFIG SET, else they take "
        f"every {POLL_WITHOUT_WAKE:g} s instead of waking at once. In redis.conf: "
        f"notify-keyspace-events {flags + missing}",
        warning=True,
    )


def store_ping(sessions: Callable[[], AbstractContextManager[Session]], url: str) -> Check:
    """Run ``SELECT 1`` in the store (the sessions translate its failures: a StoreError)."""
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except StoreError as exc:
        return Check("store", False, str(exc))
    except Exception as exc:  # any failure to reach it is what the check reports
        return Check("store", False, f"{hide_password(url)} is unreachable ({type(exc).__name__}).")
    return Check("store", True, f"{hide_password(url)} answers.")
