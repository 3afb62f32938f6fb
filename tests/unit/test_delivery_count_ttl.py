"""How long a message's delivery count lives: past the longest wait before its next delivery.

On reliable fetch a message whose whole worker died comes back up to about one and a half
reclaim times later; on kombu's fetch within a visibility timeout. A count that expired in
between would start again at one, and a poison message that kills its whole worker every time
would never reach the dead letters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from spark_integrations.tasks import context
from spark_integrations.tasks.base import FleetTask, delivery_key


class _Counted(FleetTask):
    name = "tests.counted"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Iterator[_Counted]:
    monkeypatch.setenv("SPARK_INTEGRATIONS_HOME", str(tmp_path / "home"))
    context.current_settings.cache_clear()
    task = _Counted()
    task.bind(Celery("delivery-ttl", set_as_current=False))
    task.push_request(id="delivery-ttl", retries=2)
    yield task
    task.pop_request()
    context.current_settings.cache_clear()


@pytest.mark.parametrize(
    ("visibility", "reclaim", "expected"),
    [("12", "60", 120 * 5), ("900", "60", 900 * 5), ("900", "600", 1200 * 5)],
)
def test_the_count_outlives_a_redelivery_on_either_fetch(
    counted: _Counted,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    visibility: str,
    reclaim: str,
    expected: int,
) -> None:
    monkeypatch.setenv("SPARK_INTEGRATIONS_VISIBILITY_TIMEOUT", visibility)
    monkeypatch.setenv("SPARK_INTEGRATIONS_TASK_TIME_LIMIT", "10")
    monkeypatch.setenv("SPARK_INTEGRATIONS_RECLAIM_AFTER", reclaim)
    context.current_settings.cache_clear()
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline()
        counted.count_delivery(pipe)
        assert pipe.execute()[0] == 1
        # max deliveries 3 (the default), plus two: the wait between deliveries times five.
        ttl = client.ttl(delivery_key("delivery-ttl", 2))
        assert expected - 5 <= ttl <= expected
    finally:
        client.close()
