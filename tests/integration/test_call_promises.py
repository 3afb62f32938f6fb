"""Promises of ``integrations.call`` that need a request held in flight, kept by real workers.

The sandbox holds requests on demand (``POST /_sandbox/hold``), so each test puts a request in
flight exactly when it needs one, and proves the moment it acts on happened: the request is
held at the provider, the twin was sent back to wait, the 429 was answered.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from spark_integrations.coordination import RedisCircuitBreaker
from tests.integration.fleet import (
    add_connection,
    client_app,
    dead_letters,
    outcome,
    send_call,
    start_sandbox,
    start_workers,
    wait_for,
)

pytestmark = pytest.mark.server
API_KEY = "sk-promise-" + uuid.uuid4().hex


def test_an_unkeyed_call_whose_worker_is_killed_mid_request_ends_outcome_unknown(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """The request reached the provider, then its worker died: the delivery that comes back
    does not send it again (the provider takes no idempotency key), and the call ends as
    ``outcome_unknown`` with a dead letter. The held request, let go afterwards, did take
    effect: sending it again would have made a second message."""
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}")
    cid = add_connection(redis_env, "mid-request", {"base_url": box.url}, f"api_key={API_KEY}")
    [worker] = start_workers(redis_env, short_tmp, processes, concurrency=1)
    app = client_app(redis_env)
    box.hold("api")
    result = send_call(app, cid, "create_message_unkeyed", {"text": "in flight"})
    wait_for(lambda: box.stats()["held"] == 1, 60, "the request to reach the provider")
    [child] = worker.children()
    os.kill(child, signal.SIGKILL)
    ok, error = outcome(result, timeout=120)
    box.release()
    assert not ok, "the call must not succeed without an answer"
    assert "outcome_unknown" in error and "worker was lost" in error, error
    wait_for(lambda: box.stats()["held"] == 0, 30, "the held request to be let go")
    stats = box.stats()
    assert stats["requests"] == 1, "the request was sent again after its worker died"
    assert stats["messages_created"] == 1
    [letter] = dead_letters(redis_env)
    assert letter["connection_id"] == cid and "outcome_unknown" in letter["error"]


def test_two_calls_with_one_key_at_once_send_one_request_and_share_its_outcome(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """The twin arrives while the first call's request is held at the provider: it waits
    (back to the queue, no attempt used), then returns the first's outcome, replayed."""
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}")
    config = {"base_url": box.url, "rate_limit": 1000}
    cid = add_connection(redis_env, "twins", config, f"api_key={API_KEY}")
    [worker] = start_workers(redis_env, short_tmp, processes, concurrency=2)
    app = client_app(redis_env)
    box.hold("api")
    first = send_call(app, cid, "create_message", {"text": "once"}, key="twin-1")
    wait_for(lambda: box.stats()["held"] == 1, 60, "the first request to reach the provider")
    second = send_call(app, cid, "create_message", {"text": "once"}, key="twin-1")
    # The contended path: the twin met the first in flight and was sent back to wait (the
    # budget and the breaker had no reason to defer it). Only then is the first let go.
    wait_for(
        lambda: f"integrations.call[{second.id}] retry" in worker.output(),
        60,
        "the twin to wait for the first call",
    )
    assert box.stats()["held"] == 1 and not first.ready()
    box.release()
    one = first.get(timeout=60)
    two = second.get(timeout=60)
    assert one["ok"] is True and one["attempts"] == 1
    assert two == {"ok": True, "data": one["data"], "attempts": 0, "replayed": True}
    stats = box.stats()
    assert stats["requests"] == 1 and stats["messages_created"] == 1


def test_the_breaker_counts_neither_429_nor_other_4xx_but_opens_on_a_5xx(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """With ``breaker_fail_max`` 1, a single failure the breaker counted would open it. Calls
    meet 429s, a 404 and a 401: the breaker of the connector and of each connection stays
    closed with no failure counted. Then one 5xx opens it: the same breaker, live."""
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}")
    config = {"base_url": box.url, "rate_limit": 1000, "breaker_fail_max": 1}
    # A long reset timeout: once opened, the breaker stays open while the test looks at it.
    config["breaker_reset_timeout"] = 600
    limited = add_connection(redis_env, "limited", config, f"api_key={API_KEY}")
    missing = add_connection(
        redis_env, "missing", {**config, "base_url": box.url + "/gone"}, f"api_key={API_KEY}"
    )
    refused = add_connection(redis_env, "refused", config, "api_key=not-the-key")
    start_workers(redis_env, short_tmp, processes, concurrency=2)
    app = client_app(redis_env)
    client = redis.Redis.from_url(redis_env["SPARK_INTEGRATIONS_REDIS_URL"])
    breaker = RedisCircuitBreaker(client)
    keys = ["sandbox", *(f"sandbox:{c}" for c in (limited, missing, refused))]
    try:
        box.faults(1.0, "429")
        calls = [send_call(app, limited, "create_message", {"text": f"r{i}"}) for i in range(3)]
        wait_for(lambda: box.stats()["faults_injected"] >= 6, 60, "the calls to meet 429s")
        box.faults(0.0)
        assert all(outcome(r, timeout=120)[0] for r in calls)
        gone = outcome(send_call(app, missing, "create_message", {"text": "404"}), timeout=60)
        assert not gone[0] and "404" in gone[1], gone
        denied = outcome(send_call(app, refused, "create_message", {"text": "401"}), timeout=60)
        assert not denied[0] and "refused the credentials" in denied[1], denied
        for key in keys:
            state = breaker.state(key)
            assert state["state"] == "closed" and state["failures"] == 0, (key, state)

        box.faults(1.0, "500")
        send_call(app, limited, "create_message", {"text": "5xx"})
        wait_for(
            lambda: breaker.state(f"sandbox:{limited}")["state"] == "open",
            60,
            "one 5xx to open the breaker",
        )
    finally:
        client.close()
