"""A fixture pointing task code's settings (tasks.context) at one test's store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


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
