"""/readyz leaks no internals, whatever a check found (hypothesis, 1,000 cases): the answer
names each check and its outcome, never a host, a user, a database name, a URL or a password."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from spark_integrations.checks import Check
from spark_integrations.gateway import health

WORD = st.from_regex(r"[a-z][a-z0-9]{5,11}", fullmatch=True)


@st.composite
def found(draw: st.DrawFn, name: str) -> tuple[Check, list[str]]:
    """What a check found: its detail holds a URL with a user, a password, a host and a
    database, and the library's own words (which may repeat them)."""
    user, password, host, database = (draw(WORD) + tag for tag in ("u", "p", "h", "d"))
    scheme = draw(st.sampled_from(["redis", "amqp", "postgresql+psycopg", "rediss"]))
    url = f"{scheme}://{user}:{password}@{host}.internal:{draw(st.integers(1, 65535))}/{database}"
    detail = draw(
        st.sampled_from(
            [
                f"{url} is unreachable (Error 111 connecting to {host}.internal).",
                f"the store at {url} is unreachable (FATAL: password authentication failed "
                f'for user "{user}", database "{database}").',
                f"{url} answers (maxmemory-policy noeviction).",
            ]
        )
    )
    return Check(name, draw(st.booleans()), detail), [user, password, host, database, url]


@settings(max_examples=1000, deadline=None)
@given(broker=found("broker"), store=found("store"))
def test_readyz_names_checks_and_nothing_internal(
    broker: tuple[Check, list[str]], store: tuple[Check, list[str]]
) -> None:
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(health, "broker_check", lambda s, timeout: broker[0])
        patch.setattr(health, "store_ping", lambda sessions, url: store[0])
        ok, checks = health.readiness(_SETTINGS, _no_sessions)
    finally:
        patch.undo()
    assert ok is (broker[0].ok and store[0].ok)
    assert checks == {
        "broker": {"ok": broker[0].ok, "detail": health.PASSED if broker[0].ok else health.FAILED},
        "store": {"ok": store[0].ok, "detail": health.PASSED if store[0].ok else health.FAILED},
    }
    text = repr(checks)
    for internal in broker[1] + store[1]:
        assert internal not in text
    assert "://" not in text


def _no_sessions() -> AbstractContextManager[Session]:
    raise AssertionError("the checks are replaced")


class _Settings:
    database_url = "postgresql+psycopg://fleet:pw@db.internal/fleetdb"


_SETTINGS: Any = _Settings()
