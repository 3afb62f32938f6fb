"""``integrations.call`` end to end: real workers, the real sandbox, tasks sent by name.

Each test starts the sandbox as its own process (``spark-integrations sandbox``), stores a
connection through the command line, starts workers, and sends ``integrations.call`` the way
spark does. Nothing is mocked: the sandbox's counters and message list are the evidence.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from spark_integrations.constants import REDIS_BUDGET_DEFERRALS
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    client_app,
    dead_letters,
    outcome,
    send_call,
    start_sandbox,
    start_workers,
)

API_KEY = "sk-sandbox-" + uuid.uuid4().hex


def budget_deferrals(env: dict[str, str]) -> int:
    """The budget's own count of calls that waited for it instead of meeting a 429."""
    client = redis.Redis.from_url(env["SPARK_INTEGRATIONS_REDIS_URL"])
    try:
        return int(client.get(REDIS_BUDGET_DEFERRALS) or 0)
    finally:
        client.close()


def test_call_round_trip_and_idempotency(
    fleet_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """A call returns the provider's answer; a repeated key replays it; other params are refused."""
    box = start_sandbox(fleet_env, short_tmp, processes, f"--api-key={API_KEY}")
    cid = add_connection(fleet_env, "rt", {"base_url": box.url}, f"api_key={API_KEY}")
    start_workers(fleet_env, short_tmp, processes, concurrency=1)
    app = client_app(fleet_env)

    first = send_call(app, cid, "create_message", {"text": "hello"}, key="k-1").get(timeout=60)
    assert first["ok"] is True and first["attempts"] == 1
    assert first["data"]["text"] == "hello"

    again = send_call(app, cid, "create_message", {"text": "hello"}, key="k-1").get(timeout=60)
    assert again["ok"] is True and again["attempts"] == 0
    assert again["data"] == first["data"]

    ok, error = outcome(send_call(app, cid, "create_message", {"text": "other"}, key="k-1"))
    assert not ok and "different params" in error
    stats = box.stats()
    assert stats["messages_created"] == 1
    assert stats["requests"] == 1


@pytest.mark.server
def test_malformed_calls_fail_at_once_without_a_request(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Unknown connection or action, wrong params, unknown kwargs: a clear failure, no retry."""
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}")
    cid = add_connection(redis_env, "bad", {"base_url": box.url}, f"api_key={API_KEY}")
    start_workers(redis_env, short_tmp, processes, concurrency=1)
    app = client_app(redis_env)
    cases = [
        (send_call(app, "nope", "create_message", {"text": "x"}), "no connection has the id"),
        (send_call(app, cid, "launch_rocket", {}), "has no action 'launch_rocket'"),
        (send_call(app, cid, "create_message", {"text": 5}), "must be a string"),
        (send_call(app, cid, "create_message", {}), "needs the param 'text'"),
        (send_call(app, cid, "create_message", {"text": "x", "y": 1}), "takes no param 'y'"),
        (send_call(app, cid, "create_message", {"text": "x"}, colour="red"), "no argument"),
        (
            app.send_task(
                "integrations.call",
                kwargs={"connection_id": cid, "action": "create_message", "params": [1]},
                queue="integrations.calls",
            ),
            "must be a JSON object",
        ),
    ]
    for result, expected in cases:
        ok, error = outcome(result, timeout=30)
        assert not ok, expected
        assert expected in error
        assert app.AsyncResult(result.id).state == "FAILURE"
    assert box.stats()["requests"] == 0
    letters = dead_letters(redis_env)
    assert len(letters) == len(cases)
    assert all(letter["attempts"] == 0 for letter in letters)


@pytest.mark.server
@pytest.mark.slow
def test_faults_lose_nothing_and_create_each_message_at_most_once(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """1,000 calls with 30% faults: each succeeds or is a dead letter; >= 99% succeed; no twin."""
    box = start_sandbox(
        redis_env,
        short_tmp,
        processes,
        f"--api-key={API_KEY}",
        "--fault-rate=0.3",
        "--slow-seconds=1",
    )
    # A retry policy and a breaker configured short for the test: with the defaults (8 attempts
    # within 10 minutes; the breaker open 30 s, then 60 s, ...) a few unlucky streaks of faults
    # (the breaker counts 5 in a row fleet-wide) can hold calls back for minutes. Short, every
    # call still meets the same faults, retries, breaker deferrals and dead letters.
    config = {
        "base_url": box.url,
        "rate_limit": 1000,
        "retry_attempts": 8,
        "retry_window": 60,
        "breaker_reset_timeout": 1,
    }
    cid = add_connection(redis_env, "faults", config, f"api_key={API_KEY}")
    start_workers(redis_env, short_tmp, processes, count=1, concurrency=6)
    app = client_app(redis_env)
    results = []
    for i in range(1000):
        key = f"fault-{i}" if i % 2 else None  # half keyed by the caller, half by the fleet
        results.append(send_call(app, cid, "create_message", {"text": f"m{i}"}, key=key))
    outcomes = [outcome(r, timeout=240) for r in results]
    succeeded = sum(ok for ok, _ in outcomes)
    letters = {d["id"] for d in dead_letters(redis_env)}
    assert succeeded + len(letters) == 1000, "a call was neither answered nor dead-lettered"
    assert succeeded >= 990
    texts = Counter(m["text"] for m in box.messages())
    assert not [t for t, n in texts.items() if n > 1], "a message was created twice"
    stats = box.stats()
    assert stats["faults_injected"] > 200
    for ok, value in outcomes:
        if ok:
            assert value["attempts"] >= 1


@pytest.mark.server
def test_unkeyed_action_with_unknown_outcome_is_never_resent(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """A provider taking no idempotency key: a lost answer ends as outcome_unknown, not a resend."""
    box = start_sandbox(
        redis_env,
        short_tmp,
        processes,
        f"--api-key={API_KEY}",
        "--fault-rate=0.6",
        "--slow-seconds=0.2",
    )
    cid = add_connection(
        redis_env,
        "unkeyed",
        # The breaker would open at these fault rates; this test is about outcomes, not it.
        {"base_url": box.url, "rate_limit": 1000, "breaker_fail_max": 1000},
        f"api_key={API_KEY}",
    )
    start_workers(redis_env, short_tmp, processes, concurrency=4)
    app = client_app(redis_env)
    results = [send_call(app, cid, "create_message_unkeyed", {"text": f"u{i}"}) for i in range(150)]
    outcomes = [outcome(r) for r in results]
    failed = [error for ok, error in outcomes if not ok]
    assert failed, "with 60% faults some outcomes must be unknown"
    assert all("outcome_unknown" in e or "retry budget" in e for e in failed), failed[:3]
    assert any("outcome_unknown" in e for e in failed)
    texts = Counter(m["text"] for m in box.messages())
    assert max(texts.values()) == 1, "an unkeyed request was sent again after an unknown outcome"
    assert len(dead_letters(redis_env)) == len(failed)


@pytest.mark.server
def test_budget_is_shared_by_two_worker_processes(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Two worker processes on one connection at the provider's limit: not one 429.

    The provider allows a burst of half a second: a worker process descheduled between its
    admission and its send (a loaded machine) bunches two requests by that much, which the
    fleet cannot prevent and real providers absorb. Two budgets instead of one would send 40 a
    second and overrun that burst within a second."""
    box = start_sandbox(
        redis_env, short_tmp, processes, f"--api-key={API_KEY}", "--rate-limit=20", "--burst=0.5"
    )
    cid = add_connection(
        redis_env, "shared", {"base_url": box.url, "rate_limit": 20}, f"api_key={API_KEY}"
    )
    start_workers(redis_env, short_tmp, processes, count=2, concurrency=2)
    app = client_app(redis_env)
    results = [send_call(app, cid, "create_message", {"text": f"s{i}"}) for i in range(200)]
    outcomes = [outcome(r) for r in results]
    assert all(ok for ok, _ in outcomes), [e for ok, e in outcomes if not ok][:3]
    stats = box.stats()
    assert stats["rate_limited"] == 0
    assert stats["messages_created"] == 200
    # Both processes did the work, drawing from the one budget, and calls waited for it: the
    # budget was contended (200 calls at once against 20 a second).
    done = [p.output().count("succeeded") for p in processes if isinstance(p, FleetProcess)]
    assert len(done) == 2 and all(n > 0 for n in done), done
    assert budget_deferrals(redis_env) >= 100


@pytest.mark.server
@pytest.mark.slow
def test_budget_learns_a_tighter_limit_from_the_provider(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Configured at 100/s against a provider allowing 20/s: at most 3 x 429, then none.

    The provider's own bucket is the judge of the rate it saw: every request beyond its limit
    is answered 429 and counted. The budget's own counter shows the calls that waited for it
    instead (the contended path: five times more calls than the provider takes a second)."""
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}", "--rate-limit=20")
    cid = add_connection(
        redis_env, "learn", {"base_url": box.url, "rate_limit": 100}, f"api_key={API_KEY}"
    )
    start_workers(redis_env, short_tmp, processes, count=2, concurrency=2)
    app = client_app(redis_env)
    results = [send_call(app, cid, "create_message", {"text": f"l{i}"}) for i in range(1000)]
    outcomes = [outcome(r, timeout=300) for r in results]
    assert all(ok for ok, _ in outcomes), [e for ok, e in outcomes if not ok][:3]
    stats = box.stats()
    assert stats["rate_limited"] <= 3
    assert stats["messages_created"] == 1000
    assert stats["requests"] == 1000 + stats["rate_limited"]  # nothing sent uncounted
    deferrals = budget_deferrals(redis_env)
    assert deferrals >= 500, f"only {deferrals} calls waited for the budget"
