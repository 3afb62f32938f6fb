"""The fleet-wide circuit breaker against a real Redis."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from spark_integrations.constants import REDIS_BREAKER_PREFIX
from spark_integrations.coordination import Admission, BreakerPolicy, RedisCircuitBreaker
from tests.integration.coordination.clock import on_time, rerun_when_late
from tests.integration.coordination.procs import race_admit, server_time

P = REDIS_BREAKER_PREFIX
KEY = "sandbox"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: object = None) -> None:
    """Poll until ``predicate`` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition never held: {what}"
        time.sleep(0.02)


def wait_half_open(breaker: RedisCircuitBreaker, key: str = KEY) -> None:
    """Wait until ``key`` is half-open; report its state if it never gets there."""
    last: dict[str, object] = {}

    def check() -> bool:
        last.update(breaker.state(key))
        return last["state"] == "half_open"

    wait_for(check, what=last)


def half_open(breaker: RedisCircuitBreaker, key: str = KEY) -> RedisCircuitBreaker:
    """Open ``key`` (fail_max failures) and wait until its reset timeout has passed."""
    for n in range(breaker.policy.fail_max):
        breaker.record_failure([key], f"failing-{n}")
    assert breaker.state(key)["state"] == "open"
    wait_half_open(breaker, key)
    return breaker


def test_opens_after_fail_max_consecutive_failures(client: redis.Redis) -> None:
    breaker = RedisCircuitBreaker(client, BreakerPolicy(fail_max=3, reset_timeout=30.0))
    for token in ("a", "b"):
        assert breaker.admit([KEY], token).allowed
        breaker.record_failure([KEY], token)
    breaker.record_success([KEY], "c")  # a success in between resets the count
    assert breaker.state(KEY)["failures"] == 0
    breaker.record_failure([KEY], "d")
    breaker.record_failure([KEY], "e")
    state = breaker.state(KEY)
    assert state["state"] == "closed"
    assert state["failures"] == 2
    assert breaker.admit([KEY], "f") == Admission(True, 0.0, False, "closed")

    breaker.record_failure([KEY], "f")
    assert breaker.state(KEY)["state"] == "open"
    admission = breaker.admit([KEY], "g")
    assert not admission.allowed
    assert admission.state == "open"
    assert not admission.probe


def test_open_defers_with_the_remaining_time(client: redis.Redis) -> None:
    breaker = RedisCircuitBreaker(client, BreakerPolicy(fail_max=1, reset_timeout=30.0))
    before = server_time(client)
    breaker.record_failure([KEY], "a")
    after = server_time(client)
    open_until = breaker.state(KEY)["open_until"]
    assert isinstance(open_until, float)
    assert before + 30.0 - 1e-3 <= open_until <= after + 30.0 + 1e-3
    before = server_time(client)
    admission = breaker.admit([KEY], "b")
    after = server_time(client)
    assert not admission.allowed
    # The wait is what remains of the 30 s at the moment it asked, whenever that was.
    assert open_until - after - 1e-3 <= admission.wait <= open_until - before + 1e-3


def test_exactly_one_probe_across_processes(client: redis.Redis, redis_url: str) -> None:
    policy = BreakerPolicy(fail_max=1, reset_timeout=0.2, probe_timeout=30.0)
    breaker = RedisCircuitBreaker(client, policy)
    context = multiprocessing.get_context("spawn")
    racers = 6
    barrier = context.Barrier(racers + 1)
    results = context.Queue()
    procs = [
        context.Process(target=race_admit, args=(redis_url, policy, KEY, f"p{n}", barrier, results))
        for n in range(racers)
    ]
    for proc in procs:
        proc.start()
    try:
        half_open(breaker)
        barrier.wait(timeout=30)  # all racers ready, the key half-open: go
        answers = [results.get(timeout=30) for _ in range(racers)]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        results.close()
        results.join_thread()
    assert all(proc.exitcode == 0 for proc in procs)
    probes = [a for a in answers if a[2]]
    assert len(probes) == 1
    assert probes[0][1]  # the probe is allowed
    for _token, allowed, _probe, state, wait in answers:
        assert state == "half_open"
        if not allowed:
            assert 0 < wait <= 1.0
    assert sum(1 for a in answers if a[1]) == 1
    assert breaker.state(KEY)["probe"] == probes[0][0]


def test_probe_success_closes(client: redis.Redis) -> None:
    breaker = half_open(RedisCircuitBreaker(client, BreakerPolicy(fail_max=2, reset_timeout=0.1)))
    probe = breaker.admit([KEY], "probe")
    assert probe == Admission(True, 0.0, True, "half_open")
    assert breaker.admit([KEY], "probe").probe  # its holder is admitted again as holder
    other = breaker.admit([KEY], "other")
    assert not other.allowed
    assert not other.probe
    assert 0 < other.wait <= 1.0

    breaker.record_success([KEY], "other")  # not the probe: resets the count, decides nothing
    state = breaker.state(KEY)
    assert state["state"] == "half_open"
    assert state["failures"] == 0

    breaker.record_success([KEY], "probe")
    assert breaker.state(KEY) == {
        "state": "closed",
        "failures": 0,
        "open_until": None,
        "reopens": 0,
        "probe": None,
    }
    assert client.exists(f"{P}state:{KEY}", f"{P}probe:{KEY}") == 0
    assert breaker.admit([KEY], "other") == Admission(True, 0.0, False, "closed")


def test_probe_failure_reopens_with_backoff(client: redis.Redis) -> None:
    reset = 0.1
    breaker = half_open(RedisCircuitBreaker(client, BreakerPolicy(fail_max=1, reset_timeout=reset)))
    assert breaker.admit([KEY], "probe").probe
    breaker.record_failure([KEY], "other")  # not the probe: counted, decides nothing
    assert breaker.state(KEY)["state"] == "half_open"

    before = server_time(client)
    breaker.record_failure([KEY], "probe")
    after = server_time(client)
    state = breaker.state(KEY)
    assert state["reopens"] == 1
    assert state["probe"] is None
    assert isinstance(state["open_until"], float)
    assert before + 2 * reset - 1e-3 <= state["open_until"] <= after + 2 * reset + 1e-3

    wait_half_open(breaker)
    assert breaker.admit([KEY], "second").probe
    before = server_time(client)
    breaker.record_failure([KEY], "second")
    after = server_time(client)
    open_until = breaker.state(KEY)["open_until"]
    assert isinstance(open_until, float)
    assert before + 4 * reset - 1e-3 <= open_until <= after + 4 * reset + 1e-3

    wait_half_open(breaker)
    assert breaker.admit([KEY], "third").probe
    breaker.record_success([KEY], "third")
    assert breaker.state(KEY)["reopens"] == 0  # closing resets the backoff


def test_backoff_is_capped(client: redis.Redis) -> None:
    breaker = RedisCircuitBreaker(client, BreakerPolicy(fail_max=1, reset_timeout=1.0))
    breaker.record_failure([KEY], "a")
    client.hset(f"{P}state:{KEY}", mapping={"open_until": "0", "reopens": "7"})
    assert breaker.admit([KEY], "probe").probe
    before = server_time(client)
    breaker.record_failure([KEY], "probe")
    after = server_time(client)
    open_until = breaker.state(KEY)["open_until"]
    assert isinstance(open_until, float)
    assert before + 10.0 - 1e-3 <= open_until <= after + 10.0 + 1e-3


@rerun_when_late
def test_dead_probe_expires(client: redis.Redis) -> None:
    policy = BreakerPolicy(fail_max=1, reset_timeout=0.05, probe_timeout=0.3)
    breaker = half_open(RedisCircuitBreaker(client, policy))
    claimed = server_time(client)
    assert breaker.admit([KEY], "dies").probe  # and never reports
    turned_away = breaker.admit([KEY], "next")
    on_time(server_time(client), claimed + 0.3)  # asked while the dead probe still held it
    assert not turned_away.allowed
    assert 0 < turned_away.wait <= 0.3

    admissions: list[Admission] = []

    def next_probes() -> bool:
        admissions.append(breaker.admit([KEY], "next"))
        return admissions[-1].allowed

    wait_for(next_probes)
    assert admissions[-1].probe
    assert breaker.state(KEY)["probe"] == "next"


def test_keys_are_independent(client: redis.Redis) -> None:
    breaker = RedisCircuitBreaker(client, BreakerPolicy(fail_max=2, reset_timeout=30.0))
    connector, conn, sibling = "sandbox", "sandbox:conn-1", "sandbox:conn-2"
    breaker.record_failure([connector, conn], "a")
    breaker.record_failure([conn], "b")
    assert breaker.state(connector)["state"] == "closed"
    assert breaker.state(connector)["failures"] == 1
    assert breaker.state(conn)["state"] == "open"

    open_until = breaker.state(conn)["open_until"]
    assert isinstance(open_until, float)
    before = server_time(client)
    blocked = breaker.admit([connector, conn], "c")
    after = server_time(client)
    assert not blocked.allowed
    assert blocked.state == "open"
    assert open_until - after - 1e-3 <= blocked.wait <= open_until - before + 1e-3
    assert breaker.admit([connector, sibling], "c") == Admission(True, 0.0, False, "closed")
    assert breaker.admit([connector], "c").allowed


def test_no_probe_is_claimed_when_another_key_refuses(client: redis.Redis) -> None:
    policy = BreakerPolicy(fail_max=1, reset_timeout=0.05)
    breaker = half_open(RedisCircuitBreaker(client, policy), "sandbox")
    slow = RedisCircuitBreaker(client, BreakerPolicy(fail_max=1, reset_timeout=30.0))
    slow.record_failure(["sandbox:conn"], "x")

    admission = breaker.admit(["sandbox", "sandbox:conn"], "a")
    assert not admission.allowed
    assert admission.state == "open"
    assert breaker.state("sandbox")["probe"] is None

    both = breaker.admit(["sandbox"], "b")
    assert both.probe
    breaker.record_success(["sandbox"], "b")
    assert breaker.state("sandbox")["state"] == "closed"


def test_one_caller_probes_every_half_open_key(client: redis.Redis) -> None:
    breaker = RedisCircuitBreaker(client, BreakerPolicy(fail_max=1, reset_timeout=0.05))
    keys = ["sandbox", "sandbox:conn"]
    breaker.record_failure(keys, "a")
    wait_for(lambda: all(breaker.state(k)["state"] == "half_open" for k in keys))
    assert breaker.admit(keys, "probe").probe
    assert all(breaker.state(k)["probe"] == "probe" for k in keys)
    assert not breaker.admit(["sandbox:conn"], "other").allowed
    breaker.record_success(keys, "probe")
    assert all(breaker.state(k)["state"] == "closed" for k in keys)


def test_release_frees_the_probe(client: redis.Redis) -> None:
    breaker = half_open(RedisCircuitBreaker(client, BreakerPolicy(fail_max=1, reset_timeout=0.05)))
    assert breaker.admit([KEY], "first").probe
    breaker.release([KEY], "intruder")  # not the holder: nothing happens
    assert breaker.state(KEY)["probe"] == "first"
    assert not breaker.admit([KEY], "second").allowed

    breaker.release([KEY], "first")
    assert breaker.state(KEY)["state"] == "half_open"  # no verdict
    second = breaker.admit([KEY], "second")
    assert second.allowed
    assert second.probe


def test_every_key_has_a_ttl(client: redis.Redis) -> None:
    policy = BreakerPolicy(fail_max=2, reset_timeout=0.05, probe_timeout=5.0)
    breaker = half_open(RedisCircuitBreaker(client, policy), "sandbox")
    assert breaker.admit(["sandbox"], "probe").probe
    breaker.record_failure(["sandbox:conn"], "a")
    keys = sorted(k.decode() for k in client.scan_iter("*"))
    assert keys == [f"{P}probe:sandbox", f"{P}state:sandbox", f"{P}state:sandbox:conn"]
    assert 0 < client.pttl(f"{P}probe:sandbox") <= 5_000
    for key in keys[1:]:
        assert 86_000_000 < client.pttl(key) <= 86_400_000 + 1_000


def test_bad_arguments_are_refused(client: redis.Redis) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(fail_max=0)
    with pytest.raises(ValueError):
        BreakerPolicy(reset_timeout=0.0)
    with pytest.raises(ValueError):
        BreakerPolicy(probe_timeout=float("nan"))
    breaker = RedisCircuitBreaker(client)
    with pytest.raises(ValueError):
        breaker.admit([], "t")
    with pytest.raises(ValueError):
        breaker.admit(["sandbox"], "")
    with pytest.raises(ValueError):
        breaker.admit("sandbox", "t")
