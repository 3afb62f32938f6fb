"""coordination.client against this machine's Redis: redis-py's errors leave as the fleet's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from spark_integrations.coordination import Bucket, RedisRateBudget, queue_script
from spark_integrations.coordination.client import (
    CoordinationRedis,
    ScriptsReloadedError,
    connect,
)
from spark_integrations.errors import CoordinationError

pytestmark = pytest.mark.server


@pytest.fixture
def client(redis_url: str) -> Iterator[CoordinationRedis]:
    client = connect(redis_url, decode_responses=True)
    yield client
    client.close()


def test_an_unreachable_redis_is_one_coordination_error_without_password() -> None:
    client = connect("redis://:hunter2@127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        with pytest.raises(CoordinationError) as info:
            client.incr("spark-int:test")
        with pytest.raises(CoordinationError):
            pipe = client.pipeline(transaction=False)
            pipe.incr("spark-int:test")
            pipe.execute()
    finally:
        client.close()
    message = str(info.value)
    assert message.startswith("the coordination Redis at redis://:***@127.0.0.1:1/0 failed (")
    assert "hunter2" not in message and "spark-int:test" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_refused_command_is_a_coordination_error(client: CoordinationRedis) -> None:
    client.set("spark-int:text", "x")
    with pytest.raises(CoordinationError, match=r"failed \(ResponseError\)"):
        client.incr("spark-int:text")


def test_scripts_redis_forgot_are_loaded_again(client: CoordinationRedis) -> None:
    budget = RedisRateBudget(client)
    client.reload_scripts()
    assert len(client.scripts) == len(budget.scripts)
    client.script_flush()  # as after a restart of Redis
    # One script on its own: redis-py's Script loads it again and goes on.
    assert budget.acquire([Bucket("one", 100.0)]).allowed
    client.script_flush()
    pipe = client.pipeline(transaction=False)
    queue_script(pipe, budget.scripts[0], ["a", "b", "c"], ["0", "100.0", "-1"])
    with pytest.raises(ScriptsReloadedError):
        pipe.execute()
    # Every script registered on the client is loaded again: the next pipeline goes through.
    assert all(client.script_exists(s.sha)[0] for s in budget.scripts)
    pipe = client.pipeline(transaction=False)
    queue_script(pipe, budget.scripts[0], ["a", "b", "c"], ["0", "100.0", "-1"])
    assert pipe.execute()[0][0] == 1
