"""``spark-integrations doctor``: check every part the fleet needs and say what was checked."""

from __future__ import annotations

import stat
from collections.abc import Callable

from sqlalchemy import func, select

import spark_integrations.settings as settings_module
from spark_integrations.checks import Check, broker_check, broker_fetch_check, redis_check
from spark_integrations.connectors import discover_connectors
from spark_integrations.destinations.base import discover_destinations
from spark_integrations.errors import IntegrationError
from spark_integrations.migrations import runner
from spark_integrations.settings import Settings, hide_password
from spark_integrations.store import Connection, session_scope
from spark_integrations.workers.embedded import EmbeddedRedis
from spark_integrations.workers.runtime import check_store

__all__ = ["run_checks"]


def _keys_check(s: Settings) -> Check:
    path = s.secret_key_file
    if path is None:
        return Check("secret_keys", True, f"{len(s.secret_keys)} key(s) from the environment.")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check("secret_keys", False, f"{path} is readable by others (mode {mode:o}).")
    return Check("secret_keys", True, f"{len(s.secret_keys)} key(s) from {path} (back it up).")


def _store_check(s: Settings) -> Check:
    try:
        revision = check_store(s)
        with session_scope(s.database_url) as session:
            count = session.scalar(select(func.count()).select_from(Connection)) or 0
            reauth = session.scalars(
                select(Connection.name).where(Connection.status == "needs_reauth")
            ).all()
    except IntegrationError as exc:
        return Check("store", False, str(exc))
    detail = (
        f"{hide_password(s.database_url)} at migration {revision} (newest "
        f"{runner.head_revision()}), {count} connection(s)."
    )
    if reauth:
        return Check("store", False, detail + f" Needing re-authorisation: {', '.join(reauth)}.")
    return Check("store", True, detail)


def _connectors_check() -> Check:
    reg = discover_connectors()
    names = ", ".join(reg.connectors) or "none"
    if reg.broken:
        broken = "; ".join(f"{b.name} ({b.value}): {b.error}" for b in reg.broken)
        return Check("connectors", False, f"loaded {names}; broken plugins: {broken}.")
    return Check("connectors", True, f"loaded {names}.")


def _destinations_check() -> Check:
    reg = discover_destinations()
    kinds = ", ".join(reg.destinations) or "none"
    if reg.broken:
        broken = "; ".join(f"{b.name} ({b.value}): {b.error}" for b in reg.broken)
        return Check("destinations", False, f"loaded {kinds}; broken plugins: {broken}.")
    return Check("destinations", True, f"loaded {kinds}.")


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except IntegrationError as exc:
        return Check(name, False, str(exc))


def run_checks() -> list[Check]:
    """Run every check; the first failing configuration stops the rest, which depend on it."""
    try:
        s = settings_module.load()
    except IntegrationError as exc:
        return [Check("configuration", False, str(exc))]
    checks = [
        Check(
            "configuration",
            True,
            f"{s.mode} mode, home {s.home}"
            + (", embedded Redis on " + str(s.redis_socket) if s.embedded else "")
            + ".",
        )
    ]
    checks.append(_guard("secret_keys", lambda: _keys_check(s)))
    if s.embedded:
        server = EmbeddedRedis(s.home, s.redis_socket)
        started = _guard(
            "embedded_redis",
            lambda: Check(
                "embedded_redis",
                True,
                ("started" if server.ensure_running() else "running")
                + f" (pid {server.pid()}, data in {server.data_dir}).",
            ),
        )
        checks.append(started)
    broker = broker_check(s)
    checks.append(broker)
    fetch = broker_fetch_check(s) if broker.ok else None
    if fetch is not None:
        checks.append(fetch)
    if s.result_backend != s.broker_url:
        checks.append(redis_check("result_backend", s.result_backend, need_noeviction=False))
    if s.redis_url.replace("unix://", "redis+socket://") != s.broker_url:
        checks.append(redis_check("coordination_redis", s.redis_url, need_noeviction=True))
    checks.append(_store_check(s))
    checks.append(_connectors_check())
    checks.append(_destinations_check())
    return checks
