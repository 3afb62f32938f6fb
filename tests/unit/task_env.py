"""A fixture pointing task code's settings (tasks.context) at one test's store, and a context
giving task code a SQLite store with one sandbox connection and this machine's Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from spark_integrations.store import SecretBox


@pytest.fixture(name="task_env")
def task_env_fixture(
    store_url: str, fernet_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """Task code's settings pointed at this test's store (server mode; the broker is never
    reached); yields the store's URL."""
    from spark_integrations.tasks import context, lookup

    for name, value in {
        "SPARK_INTEGRATIONS_HOME": str(tmp_path / "home"),
        "SPARK_INTEGRATIONS_BROKER_URL": "redis://127.0.0.1:6379/15",
        "SPARK_INTEGRATIONS_DATABASE_URL": store_url,
        "SPARK_INTEGRATIONS_SECRET_KEYS": fernet_key,
    }.items():
        monkeypatch.setenv(name, value)
    context.current_settings.cache_clear()
    lookup.secret_box.cache_clear()
    yield store_url
    context.current_settings.cache_clear()
    lookup.secret_box.cache_clear()


def forget() -> None:
    """This process's caches, as after a fork: settings, clients, connections."""
    from spark_integrations.tasks import clients, context, lookup

    context.current_settings.cache_clear()
    context._redis = None
    clients._forget()
    lookup._cache.clear()
    lookup.secret_box.cache_clear()


@contextmanager
def sandbox_connection(
    monkeypatch: pytest.MonkeyPatch,
    sqlite_url: str,
    redis_url: str,
    fernet_key: str,
    *,
    base_url: str,
    api_key: str,
) -> Iterator[tuple[str, SecretBox]]:
    """Task code's settings on a migrated SQLite store and this machine's Redis, holding one
    active sandbox connection to ``base_url``; yields its id and the secret box. After: the
    caches are forgotten and the coordination client closed."""
    from spark_integrations.migrations import runner
    from spark_integrations.store import session_scope
    from spark_integrations.store.connections import add_connection
    from spark_integrations.tasks import context

    runner.upgrade(sqlite_url)
    for name, value in {
        "DATABASE_URL": sqlite_url,
        "BROKER_URL": redis_url,
        "REDIS_URL": redis_url,
        "SECRET_KEYS": fernet_key,
    }.items():
        monkeypatch.setenv(f"SPARK_INTEGRATIONS_{name}", value)
    forget()
    box = SecretBox([fernet_key])
    with session_scope(sqlite_url) as session:
        cid = add_connection(
            session, box, provider="sandbox", name="unit", config={"base_url": base_url},
            secrets={"api_key": api_key}, status="active",
        ).id  # fmt: skip
    yield cid, box
    client = context._redis
    forget()
    if client is not None:
        client.close()
