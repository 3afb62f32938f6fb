"""The fleet-wide rate budget against a real Redis."""

from __future__ import annotations

import itertools
import math
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
import redis

from constants import REDIS_BUDGET_PREFIX
from coordination import Bucket, Grant, RedisRateBudget
from tests.integration.coordination.procs import send_loop, server_time

P = REDIS_BUDGET_PREFIX
US = 1_000_000


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def budget(client: redis.Redis) -> RedisRateBudget:
    return RedisRateBudget(client)


def stored_int(client: redis.Redis, key: str) -> int:
    raw = client.get(key)
    assert raw is not None, f"{key} is missing"
    return int(raw)


def test_burst_of_acquires_is_evenly_spaced(client: redis.Redis, budget: RedisRateBudget) -> None:
    bucket = Bucket("even", rate=10.0)
    t_before = server_time(client)
    grants = [budget.acquire([bucket], f"t{k}") for k in range(6)]
    t_after = server_time(client)

    assert grants[0] == Grant(allowed=True, wait=0.0, reserved=False)
    for grant in grants[1:]:
        assert not grant.allowed
        assert grant.reserved
    waits = [g.wait for g in grants[1:]]
    assert waits == sorted(waits)
    assert len(set(waits)) == len(waits)  # strictly increasing
    slots = [stored_int(client, f"{P}slot:t{k}") for k in range(1, 6)]
    # Reserved at t0 + k / rate, t0 being the first grant.
    for k, slot in enumerate(slots, start=1):
        assert (t_before + k * 0.1) * US - 1 <= slot <= (t_after + k * 0.1) * US + 1
    assert [b - a for a, b in itertools.pairwise(slots)] == [100_000] * 4
    # The TAT sits one interval past the last reservation.
    assert stored_int(client, f"{P}tat:even") == slots[-1] + 100_000


def test_burst_tolerance_grants_that_many_at_once(budget: RedisRateBudget) -> None:
    bucket = Bucket("bursty", rate=10.0, burst=0.3)
    grants = [budget.acquire([bucket], f"t{k}") for k in range(6)]
    assert [g.allowed for g in grants] == [True] * 4 + [False] * 2
    assert all(g.reserved for g in grants[4:])


def test_stricter_bucket_wins_and_both_advance(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    fast, slow = Bucket("conn", rate=10.0), Bucket("conn:one", rate=2.0)
    assert budget.acquire([fast, slow], "a").allowed
    second = budget.acquire([fast, slow], "b")
    assert second.reserved
    assert 0.4 < second.wait <= 0.5
    slot = stored_int(client, f"{P}slot:b")
    assert stored_int(client, f"{P}tat:conn") == slot + 100_000
    assert stored_int(client, f"{P}tat:conn:one") == slot + 500_000
    # The fast bucket alone is now booked past the slow one's slot as well.
    alone = budget.acquire([fast], "c")
    assert alone.reserved
    assert stored_int(client, f"{P}slot:c") == slot + 100_000


def test_reservation_is_honoured(client: redis.Redis, budget: RedisRateBudget) -> None:
    bucket = Bucket("honour", rate=5.0)
    assert budget.acquire([bucket], "first").allowed
    grant = budget.acquire([bucket], "late")
    assert grant.reserved
    slot = stored_int(client, f"{P}slot:late")
    tat = stored_int(client, f"{P}tat:honour")

    early = budget.acquire([bucket], "late")  # came back early: same reservation, nothing new
    assert not early.allowed
    assert early.reserved
    assert 0 < early.wait <= grant.wait
    assert stored_int(client, f"{P}slot:late") == slot
    assert stored_int(client, f"{P}tat:honour") == tat

    time.sleep(early.wait)
    on_time = budget.acquire([bucket], "late")
    assert on_time == Grant(allowed=True, wait=0.0, reserved=False)
    assert client.exists(f"{P}slot:late") == 0
    assert stored_int(client, f"{P}tat:honour") == tat  # consuming it charges nothing more


def test_a_reservation_used_late_is_void_and_asks_afresh(budget: RedisRateBudget) -> None:
    """A caller that comes back more than one period after its slot does not send in a bunch."""
    bucket = [Bucket("late", 2.0)]  # one slot every 0.5 s
    assert budget.acquire(bucket, "a").allowed
    b = budget.acquire(bucket, "b")
    c = budget.acquire(bucket, "c")
    assert b.reserved and c.reserved and c.wait > b.wait
    time.sleep(c.wait + 0.1)  # b is now at least 0.6 s late, c at least 0.1 s
    again = budget.acquire(bucket, "b")
    assert not again.allowed and again.reserved  # void: a fresh slot after c's
    assert again.wait > 0.3


def test_slots_beyond_the_horizon_are_not_reserved(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    bucket = Bucket("far", rate=1.0)
    assert budget.acquire([bucket], "a", horizon=0.5).allowed
    tat = stored_int(client, f"{P}tat:far")
    far = budget.acquire([bucket], "b", horizon=0.5)
    assert not far.allowed
    assert not far.reserved
    assert 0.5 < far.wait <= 1.0
    assert client.exists(f"{P}slot:b") == 0
    assert stored_int(client, f"{P}tat:far") == tat
    near = budget.acquire([bucket], "b", horizon=2.0)
    assert near.reserved
    assert stored_int(client, f"{P}slot:b") == tat


def test_learned_rate_tightens_and_relaxes_up_to_configured(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    bucket = Bucket("learn", rate=100.0)
    assert budget.effective_rate(bucket) == 100.0
    budget.learn("learn", rate=10.0)
    assert budget.effective_rate(bucket) == 10.0
    budget.acquire([bucket], "a")
    budget.acquire([bucket], "b")
    budget.acquire([bucket], "c")
    assert stored_int(client, f"{P}slot:c") - stored_int(client, f"{P}slot:b") == 100_000

    budget.learn("learn", rate=1000.0)  # higher than configured: back to the configured rate
    assert budget.effective_rate(bucket) == 100.0
    budget.acquire([bucket], "d")
    budget.acquire([bucket], "e")
    assert stored_int(client, f"{P}slot:e") - stored_int(client, f"{P}slot:d") == 10_000

    budget.learn("learn", rate=50.0)
    assert budget.effective_rate(bucket) == 50.0
    budget.forget("learn")
    assert budget.effective_rate(bucket) == 100.0
    assert client.exists(f"{P}learned:learn") == 0


def test_learned_pause_blocks_until_then(client: redis.Redis, budget: RedisRateBudget) -> None:
    bucket = Bucket("paused", rate=100.0, burst=1.0)
    assert budget.acquire([bucket], "before").allowed
    budget.learn("paused", pause=0.4)
    budget.learn("paused", pause=0.1)  # a shorter pause does not shorten it
    pause_until = int(client.hget(f"{P}learned:paused", "pause_until") or 0)
    assert stored_int(client, f"{P}tat:paused") >= pause_until

    grant = budget.acquire([bucket], "during")
    assert grant.reserved
    assert 0 < grant.wait <= 0.4
    assert stored_int(client, f"{P}slot:during") == pause_until
    assert not budget.acquire([bucket], "far", horizon=0.0).allowed

    time.sleep(grant.wait)
    assert budget.acquire([bucket], "during").allowed


def test_every_key_has_a_ttl(client: redis.Redis, budget: RedisRateBudget) -> None:
    buckets = [Bucket("ttl", rate=1.0), Bucket("ttl:one", rate=0.5, burst=2.0)]
    budget.acquire(buckets, "a")
    budget.acquire(buckets, "b")
    budget.acquire(buckets, "c", horizon=0.1)
    budget.learn("ttl", rate=0.2, ttl=5.0)
    budget.learn("ttl:one", pause=120.0, ttl=5.0)
    budget.learn("other", pause=3.0)
    keys = sorted(k.decode() for k in client.scan_iter("*"))
    assert keys == sorted(
        [
            f"{P}tat:ttl",
            f"{P}tat:ttl:one",
            f"{P}tat:other",
            f"{P}slot:b",
            f"{P}learned:ttl",
            f"{P}learned:ttl:one",
            f"{P}learned:other",
        ]
    )
    for key in keys:
        assert client.pttl(key) > 0, key
    # Learned state lasts its ttl, but at least as long as its pause.
    assert client.pttl(f"{P}learned:ttl") <= 5_000
    assert client.pttl(f"{P}learned:ttl:one") > 119_000
    # A TAT key lasts a bit longer than the distance to its TAT.
    assert client.pttl(f"{P}tat:ttl:one") > 119_000


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_bad_rates_are_refused(budget: RedisRateBudget, rate: float) -> None:
    with pytest.raises(ValueError):
        Bucket("bad", rate=rate)
    with pytest.raises(ValueError):
        budget.learn("bad", rate=rate)


def test_bad_arguments_are_refused(budget: RedisRateBudget) -> None:
    with pytest.raises(ValueError):
        Bucket("bad", rate=1.0, burst=-1.0)
    with pytest.raises(ValueError):
        Bucket("", rate=1.0)
    with pytest.raises(ValueError):
        budget.acquire([], "t")
    with pytest.raises(ValueError):
        budget.acquire([Bucket("x", 1.0), Bucket("x", 2.0)], "t")
    with pytest.raises(ValueError):
        budget.acquire([Bucket("x", 1.0)], "t", horizon=-1.0)
    with pytest.raises(ValueError):
        budget.learn("x", pause=-1.0)


def test_fractional_and_large_rates(client: redis.Redis, budget: RedisRateBudget) -> None:
    slow, fast = Bucket("slow", rate=0.5), Bucket("fast", rate=1000.0)
    budget.acquire([slow], "s1")
    budget.acquire([slow], "s2")
    budget.acquire([slow], "s3")
    assert stored_int(client, f"{P}slot:s3") - stored_int(client, f"{P}slot:s2") == 2 * US
    for k in range(5):
        budget.acquire([fast], f"f{k}")
    tat = stored_int(client, f"{P}tat:fast")
    budget.acquire([fast], "f5")
    assert stored_int(client, f"{P}tat:fast") >= tat + 1_000


def test_decoded_client_works(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        budget = RedisRateBudget(client)
        budget.learn("dec", rate=2.0)
        assert budget.effective_rate(Bucket("dec", rate=5.0)) == 2.0
        assert budget.acquire([Bucket("dec", rate=5.0)], "a").allowed
    finally:
        client.close()


def test_budget_is_shared_across_processes(client: redis.Redis, redis_url: str) -> None:
    rate, burst, duration, workers = 50.0, 0.1, 3.0, 4
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(send_loop, redis_url, rate, burst, duration) for _ in range(workers)]
        per_process = [f.result(timeout=60) for f in futures]
    assert all(per_process), "every process sent something"
    sends = sorted(t for times in per_process for t in times)

    bound = rate * 1.0 + rate * burst + 1
    end = 0
    for start, t in enumerate(sends):  # every 1-second window starting at a send
        while end < len(sends) and sends[end] < t + 1.0:
            end += 1
        assert end - start <= bound, f"{end - start} sends in the second after {t}"
    elapsed = sends[-1] - sends[0]
    assert elapsed > 1.0
    assert len(sends) >= 0.9 * rate * elapsed
