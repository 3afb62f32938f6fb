"""The fleet-wide rate budget against a real Redis.

The budget keeps integer microseconds of Redis ``TIME``; so do these tests. A script's own
``now`` is never returned, but it lies between two reads of Redis's clock taken just before and
just after the call (:func:`timed_acquire`), and a refused grant's ``wait`` is exactly
``slot - now``: the tests pin every slot exactly (from the planning TAT, which moves on one
interval past each slot handed out) and bound ``now`` by those reads.

No test depends on the machine's speed: where an answer depends on asking before some instant,
the test checks with those reads that it did, and re-runs its scenario when it stalled past it
(``clock.on_time``, ``clock.rerun_when_late``).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import redis

from spark_integrations.constants import REDIS_BUDGET_PREFIX
from spark_integrations.coordination import Bucket, Grant, RedisRateBudget, load_scripts
from tests.integration.coordination.clock import on_time, rerun_when_late
from tests.integration.coordination.procs import send_loop, server_time

P = REDIS_BUDGET_PREFIX
US = 1_000_000
GRANTED = Grant(allowed=True, wait=0.0, reserved=False)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def budget(client: redis.Redis) -> RedisRateBudget:
    return RedisRateBudget(client)


def redis_now(client: redis.Redis) -> int:
    """Redis's clock in integer microseconds, the unit the budget stores."""
    seconds, micros = client.time()
    return int(seconds) * US + int(micros)


def sleep_until(client: redis.Redis, at: int) -> None:
    """Sleep until Redis's clock reads at least ``at`` (microseconds)."""
    while (now := redis_now(client)) < at:
        time.sleep((at - now) / US)


def stored_int(client: redis.Redis, key: str) -> int:
    raw = client.get(key)
    assert raw is not None, f"{key} is missing"
    return int(raw)


def tat(client: redis.Redis, bucket_key: str) -> int:
    """The emission TAT of a bucket."""
    return stored_int(client, f"{P}tat:{bucket_key}")


def plan(client: redis.Redis, bucket_key: str) -> int:
    """The planning TAT of a bucket."""
    return stored_int(client, f"{P}plan:{bucket_key}")


def wait_us(grant: Grant) -> int:
    """The grant's wait in microseconds, exactly as the script returned it."""
    return round(grant.wait * US)


def timed_acquire(
    client: redis.Redis, budget: RedisRateBudget, buckets: Sequence[Bucket], **kwargs: Any
) -> tuple[Grant, int, int]:
    """``acquire`` with Redis's clock read just before and just after: the script's now."""
    before = redis_now(client)
    grant = budget.acquire(buckets, **kwargs)
    after = redis_now(client)
    return grant, before, after


def assert_planned_at(grant: Grant, slot: int, before: int, after: int) -> None:
    """A refusal with a planned slot at ``slot``, asked between ``before`` and ``after``."""
    assert not grant.allowed
    assert grant.reserved
    assert before <= slot - wait_us(grant) <= after, (grant, slot, before, after)


# --- Emission: spacing, burst tolerance, several buckets ---------------------------------------


@rerun_when_late
def test_strict_burst_is_planned_one_interval_apart(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    bucket, T = [Bucket("even", rate=10.0, burst=0)], 100_000
    first, before, after = timed_acquire(client, budget, bucket)
    assert first == GRANTED
    due = tat(client, "even")
    assert before + T <= due <= after + T  # the first grant's now, plus one interval
    assert plan(client, "even") == due  # the planning TAT is raised to the emission TAT

    waits: list[float] = []
    for k in range(5):
        grant, before, after = timed_acquire(client, budget, bucket)
        on_time(after, due)  # each ask before the first slot: all within one interval
        slot = due + k * T  # the next planned slot: evenly spaced from the emission TAT
        assert_planned_at(grant, slot, before, after)
        assert plan(client, "even") == slot + T
        waits.append(grant.wait)
    # Each wait is one interval longer than the last, less the time between the two asks.
    assert all(b > a for a, b in itertools.pairwise(waits))
    assert all(b - a <= 0.1 + 1e-6 for a, b in itertools.pairwise(waits))
    assert tat(client, "even") == due  # a refusal charges nothing to the emission schedule
    assert plan(client, "even") == due + 5 * T  # the last slot plus one interval


@rerun_when_late
def test_default_burst_is_half_an_interval(client: redis.Redis, budget: RedisRateBudget) -> None:
    loose, strict, T = Bucket("loose", rate=2.0), Bucket("strict", rate=2.0, burst=0), 500_000
    assert budget.acquire([strict]) == GRANTED
    assert budget.acquire([loose]) == GRANTED
    due_strict, due_loose = tat(client, "strict"), tat(client, "loose")

    # Right after a grant even the loose bucket refuses, and plans at the emission TAT itself
    # (the tolerance is for emission; the planned slots are evenly spaced).
    refused, before, after = timed_acquire(client, budget, [loose])
    on_time(after, due_loose - T // 2)  # before the tolerance begins
    assert_planned_at(refused, due_loose, before, after)
    assert plan(client, "loose") == due_loose + T

    # 0.2 s before the emission TAT, by Redis's clock: within the loose bucket's 0.25 s.
    sleep_until(client, max(due_strict, due_loose) - 200_000)
    strict_grant, before, after = timed_acquire(client, budget, [strict])
    on_time(after, due_strict)
    assert_planned_at(strict_grant, due_strict, before, after)
    assert budget.acquire([loose]) == GRANTED
    # Charged from the TAT, not from now: the schedule stays even.
    assert tat(client, "loose") == due_loose + T
    # And a third is refused: the TAT is now more than half an interval ahead.
    third, _, after = timed_acquire(client, budget, [loose])
    on_time(after, due_loose + T // 2)
    assert not third.allowed


@rerun_when_late
def test_default_burst_follows_the_learned_rate(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    # Configured 100/s (half an interval: 5 ms); learned 2/s (half an interval: 0.25 s).
    bucket, T = [Bucket("learned-tau", rate=100.0)], 500_000
    budget.learn("learned-tau", rate=2.0)
    first, before, after = timed_acquire(client, budget, bucket)
    assert first == GRANTED
    due = tat(client, "learned-tau")
    assert before + T <= due <= after + T

    sleep_until(client, due - 200_000)
    assert budget.acquire(bucket) == GRANTED
    assert tat(client, "learned-tau") == due + T
    again, _, after = timed_acquire(client, budget, bucket)
    on_time(after, due + T // 2)
    assert not again.allowed


@rerun_when_late
def test_burst_tolerance_grants_that_many_at_once(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    bucket, T = [Bucket("bursty", rate=10.0, burst=0.3)], 100_000
    first, before, after = timed_acquire(client, budget, bucket)
    grants = [first] + [budget.acquire(bucket) for _ in range(3)]
    assert grants == [GRANTED] * 4  # 1 + rate * burst
    start = tat(client, "bursty") - 4 * T  # the first grant's now
    assert before <= start <= after

    # Then planned, after the burst: the planning TAT followed the emission TAT up.
    for k in range(2):
        grant, before, after = timed_acquire(client, budget, bucket)
        on_time(after, start + T)  # the tolerance of 0.3 s ends one interval after the start
        assert_planned_at(grant, start + (4 + k) * T, before, after)
    assert plan(client, "bursty") == start + 6 * T
    assert tat(client, "bursty") == start + 4 * T


@rerun_when_late
def test_stricter_bucket_wins_and_both_advance(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    fast, slow = Bucket("conn", rate=10.0, burst=0), Bucket("conn:one", rate=2.0, burst=0)
    first, before, after = timed_acquire(client, budget, [fast, slow])
    assert first == GRANTED
    due_fast, due_slow = tat(client, "conn"), tat(client, "conn:one")
    assert before + 100_000 <= due_fast <= after + 100_000
    assert due_slow == due_fast + 400_000  # both charged, at the same now
    assert (plan(client, "conn"), plan(client, "conn:one")) == (due_fast, due_slow)

    # The next slot follows the slower bucket, and both planning TATs move on from it.
    second, before, after = timed_acquire(client, budget, [fast, slow])
    on_time(after, due_fast)
    assert_planned_at(second, due_slow, before, after)
    assert plan(client, "conn") == due_slow + 100_000
    assert plan(client, "conn:one") == due_slow + 500_000
    assert (tat(client, "conn"), tat(client, "conn:one")) == (due_fast, due_slow)

    # The fast bucket alone is now planned past the slow one's slot as well...
    alone, before, after = timed_acquire(client, budget, [fast])
    on_time(after, due_fast)
    assert_planned_at(alone, due_slow + 100_000, before, after)
    assert plan(client, "conn") == due_slow + 200_000
    assert plan(client, "conn:one") == due_slow + 500_000

    # ...but emission decides: once its own schedule has room, it goes alone at once.
    sleep_until(client, due_fast)
    alone, before, after = timed_acquire(client, budget, [fast])
    assert alone == GRANTED
    assert due_fast + 100_000 <= tat(client, "conn") <= after + 100_000
    assert tat(client, "conn:one") == due_slow
    assert plan(client, "conn") == due_slow + 200_000


# --- Planning: coming back on time, early, late, or too far ---------------------------------


@rerun_when_late
def test_on_time_caller_is_granted_and_early_one_planned_again(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    bucket, T = [Bucket("honour", rate=4.0)], 250_000  # half an interval of tolerance
    assert budget.acquire(bucket) == GRANTED
    due = tat(client, "honour")
    b, before, after = timed_acquire(client, budget, bucket)
    on_time(after, due - T // 2)  # asks before the tolerance begins are refused
    assert_planned_at(b, due, before, after)
    c, before, after = timed_acquire(client, budget, bucket)
    on_time(after, due - T // 2)
    assert_planned_at(c, due + T, before, after)

    # C comes back early: refused, and handed the next free slot (the planning TAT moved on).
    early, before, after = timed_acquire(client, budget, bucket)
    on_time(after, due - T // 2)
    assert_planned_at(early, due + 2 * T, before, after)
    assert plan(client, "honour") == due + 3 * T
    assert tat(client, "honour") == due

    # B comes back at its slot: granted.
    sleep_until(client, due)
    b_back, _, after = timed_acquire(client, budget, bucket)
    assert b_back == GRANTED
    b_tat = tat(client, "honour")
    assert due + T <= b_tat <= after + T
    assert plan(client, "honour") == max(due + 3 * T, b_tat)

    # C comes back at its new slot: granted too.
    sleep_until(client, due + 2 * T)
    again, _, after = timed_acquire(client, budget, bucket)
    assert again == GRANTED
    assert due + 3 * T <= tat(client, "honour") <= after + T


@rerun_when_late
def test_late_caller_fills_the_gap_without_bunching(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    bucket, T, tau = [Bucket("gap", rate=4.0)], 250_000, 125_000
    assert budget.acquire(bucket) == GRANTED
    due = tat(client, "gap")
    b, before, after = timed_acquire(client, budget, bucket)
    on_time(after, due - tau)
    assert_planned_at(b, due, before, after)
    c, before, after = timed_acquire(client, budget, bucket)
    on_time(after, due - tau)
    assert_planned_at(c, due + T, before, after)
    planned = plan(client, "gap")
    assert planned == due + 2 * T

    # Both slots pass and nobody asks; then B asks, late: the schedule has room, it goes.
    sleep_until(client, due + T + 10_000)
    late, before, after = timed_acquire(client, budget, bucket)
    assert late == GRANTED
    b_tat = tat(client, "gap")
    assert before + T <= b_tat <= after + T  # charged from now: the schedule had fallen behind
    planned = plan(client, "gap")
    assert planned == max(due + 2 * T, b_tat)

    # C asks right after, late too: refused (no bunching), and handed a new slot.
    c_again, before, after = timed_acquire(client, budget, bucket)
    on_time(after, b_tat - tau)
    slot = max(b_tat - tau, planned)
    assert_planned_at(c_again, slot, before, after)
    assert plan(client, "gap") == slot + T
    assert tat(client, "gap") == b_tat

    sleep_until(client, slot)
    assert budget.acquire(bucket) == GRANTED


@rerun_when_late
def test_slots_beyond_the_horizon_are_not_planned(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    bucket, T = [Bucket("far", rate=1.0, burst=0)], US
    assert budget.acquire(bucket, horizon=0.5) == GRANTED
    due = tat(client, "far")

    far, before, after = timed_acquire(client, budget, bucket, horizon=0.5)
    on_time(after, due - 500_000)  # the slot is more than half a second ahead
    assert not far.allowed
    assert not far.reserved
    assert far.wait > 0.5
    assert before <= due - wait_us(far) <= after  # the slot it would have had
    assert (tat(client, "far"), plan(client, "far")) == (due, due)  # nothing planned
    none, _, after = timed_acquire(client, budget, bucket, horizon=0.0)
    on_time(after, due)
    assert (none.allowed, none.reserved) == (False, False)
    assert plan(client, "far") == due

    near, before, after = timed_acquire(client, budget, bucket, horizon=2.0)
    on_time(after, due)
    assert_planned_at(near, due, before, after)
    assert plan(client, "far") == due + T
    # The next free slot is one interval further, beyond a horizon the first would have fit.
    next_one, before, after = timed_acquire(client, budget, bucket, horizon=1.5)
    on_time(after, due + T - 1_500_000)
    assert (next_one.allowed, next_one.reserved) == (False, False)
    assert before <= due + T - wait_us(next_one) <= after
    assert plan(client, "far") == due + T


# --- What the provider told us ------------------------------------------------------------


@rerun_when_late
def test_learned_rate_tightens_and_relaxes_up_to_configured(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    bucket = [Bucket("learn", rate=100.0, burst=0)]
    assert budget.effective_rate(bucket[0]) == 100.0
    budget.learn("learn", rate=2.0)
    assert budget.effective_rate(bucket[0]) == 2.0
    first, before, after = timed_acquire(client, budget, bucket)
    assert first == GRANTED
    due = tat(client, "learn")
    assert before + 500_000 <= due <= after + 500_000  # one interval at the learned rate

    def planned_step() -> int:
        """Ask once (refused: the emission TAT is ahead); how far the planning TAT moved."""
        start = plan(client, "learn")
        grant, _, after = timed_acquire(client, budget, bucket)
        on_time(after, due)
        assert not grant.allowed and grant.reserved
        return plan(client, "learn") - start

    assert planned_step() == 500_000
    budget.learn("learn", rate=1000.0)  # above the configured rate: back to the configured one
    assert budget.effective_rate(bucket[0]) == 100.0
    assert planned_step() == 10_000
    budget.learn("learn", rate=50.0)
    assert budget.effective_rate(bucket[0]) == 50.0
    assert planned_step() == 20_000
    budget.forget("learn")
    assert budget.effective_rate(bucket[0]) == 100.0
    assert client.exists(f"{P}learned:learn") == 0
    assert planned_step() == 10_000
    assert tat(client, "learn") == due


@rerun_when_late
def test_learned_pause_blocks_until_then(client: redis.Redis, budget: RedisRateBudget) -> None:
    bucket = [Bucket("paused", rate=100.0, burst=1.0)]
    assert budget.acquire(bucket) == GRANTED
    before = redis_now(client)
    budget.learn("paused", pause=0.4)
    after = redis_now(client)
    budget.learn("paused", pause=0.1)  # a shorter pause does not shorten it
    until = int(client.hget(f"{P}learned:paused", "pause_until") or 0)
    assert before + 400_000 <= until <= after + 400_000
    # Both TATs pushed to the pause's end.
    assert (tat(client, "paused"), plan(client, "paused")) == (until, until)

    during, before, after = timed_acquire(client, budget, bucket)
    on_time(after, until)
    assert_planned_at(during, until, before, after)  # despite a whole second of tolerance
    assert plan(client, "paused") == until + 10_000
    assert 0 < during.wait <= 0.4
    far, _, after = timed_acquire(client, budget, bucket, horizon=0.0)
    on_time(after, until)
    assert (far.allowed, far.reserved) == (False, False)

    sleep_until(client, until)
    assert budget.acquire(bucket) == GRANTED


def test_longer_pause_extends_and_pushes_both_tats(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    budget.learn("ext", pause=0.2)
    first = int(client.hget(f"{P}learned:ext", "pause_until") or 0)
    before = redis_now(client)
    budget.learn("ext", pause=5.0)
    after = redis_now(client)
    until = int(client.hget(f"{P}learned:ext", "pause_until") or 0)
    assert until > first
    assert before + 5 * US <= until <= after + 5 * US
    assert (tat(client, "ext"), plan(client, "ext")) == (until, until)
    # TATs already past the pause's end are left alone.
    client.set(f"{P}tat:ext", until + 7 * US)
    budget.learn("ext", pause=1.0)
    assert tat(client, "ext") == until + 7 * US
    assert int(client.hget(f"{P}learned:ext", "pause_until") or 0) == until


@rerun_when_late
def test_pause_holds_only_calls_charged_to_its_bucket(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    conn, one = Bucket("svc", rate=10.0), Bucket("svc:one", rate=2.0)
    budget.learn("svc:one", pause=1.0)
    until = int(client.hget(f"{P}learned:svc:one", "pause_until") or 0)
    held, before, after = timed_acquire(client, budget, [conn, one])
    on_time(after, until)
    assert_planned_at(held, until, before, after)
    assert plan(client, "svc") == until + 100_000  # every bucket of the call planned past it
    assert plan(client, "svc:one") == until + 500_000
    assert client.exists(f"{P}tat:svc") == 0  # nothing emitted
    # The connector-wide bucket alone is not paused: it goes now (its plan does not hold it).
    assert budget.acquire([conn]) == GRANTED


# --- Housekeeping ---------------------------------------------------------------------------


def test_every_key_has_a_ttl(client: redis.Redis, budget: RedisRateBudget) -> None:
    buckets = [Bucket("ttl", rate=1.0), Bucket("ttl:one", rate=0.5, burst=2.0)]
    assert budget.acquire(buckets) == GRANTED
    assert budget.acquire(buckets).reserved
    assert not budget.acquire(buckets, horizon=0.1).reserved
    budget.learn("ttl", rate=0.2, ttl=5.0)
    budget.learn("ttl:one", pause=120.0, ttl=5.0)
    budget.learn("other", pause=3.0)
    schedule_keys = [f"{P}{kind}:{key}" for kind in ("tat", "plan") for key in ("ttl", "ttl:one")]
    schedule_keys += [f"{P}tat:other", f"{P}plan:other"]
    learned_keys = [f"{P}learned:{key}" for key in ("ttl", "ttl:one", "other")]
    keys = sorted(k.decode() for k in client.scan_iter("*"))
    assert keys == sorted(schedule_keys + learned_keys)  # no per-caller keys

    for key in keys:
        assert client.pttl(key) > 0, key
    # A TAT expires a second after it has passed (to the millisecond, by Redis's clock).
    for key in schedule_keys:
        value_ms = stored_int(client, key) / 1000
        before = redis_now(client) / 1000
        ttl_ms = client.pttl(key)
        after = redis_now(client) / 1000
        assert value_ms + 1000 - 3 <= after + ttl_ms, key
        assert before + ttl_ms <= value_ms + 1000 + 3, key
    # Learned state lasts its ttl, but at least as long as its pause.
    assert 0 < client.pttl(f"{P}learned:ttl") <= 5_000
    assert client.pttl(f"{P}learned:ttl:one") > 120_000
    assert client.pttl(f"{P}tat:ttl:one") > 120_000
    assert 55_000 < client.pttl(f"{P}learned:other") <= 60_000  # the default ttl


@pytest.mark.parametrize("rate", [0, 0.0, -1.0, math.nan, math.inf, -math.inf, "10"])
def test_bad_rates_are_refused(budget: RedisRateBudget, rate: Any) -> None:
    with pytest.raises(ValueError):
        Bucket("bad", rate=rate)
    with pytest.raises(ValueError):
        budget.learn("bad", rate=rate)


@pytest.mark.parametrize("burst", [-1.0, -1e-9, math.nan, math.inf])
def test_bad_bursts_are_refused(burst: float) -> None:
    with pytest.raises(ValueError):
        Bucket("bad", rate=1.0, burst=burst)


@pytest.mark.parametrize("horizon", [-1.0, math.nan, math.inf])
def test_bad_horizons_are_refused(
    client: redis.Redis, budget: RedisRateBudget, horizon: float
) -> None:
    with pytest.raises(ValueError):
        budget.acquire([Bucket("x", 1.0)], horizon=horizon)
    with pytest.raises(ValueError):
        budget.acquire_later(client.pipeline(), [Bucket("x", 1.0)], horizon=horizon)
    assert client.dbsize() == 0


def test_bad_arguments_are_refused(client: redis.Redis, budget: RedisRateBudget) -> None:
    with pytest.raises(ValueError):
        Bucket("", rate=1.0)
    with pytest.raises(ValueError):
        budget.acquire([])
    with pytest.raises(ValueError):
        budget.acquire([Bucket("x", 1.0), Bucket("x", 2.0)])
    with pytest.raises(ValueError):
        budget.acquire_later(client.pipeline(), [])
    with pytest.raises(ValueError):
        budget.learn("x", pause=-1.0)
    with pytest.raises(ValueError):
        budget.learn("x", pause=math.nan)
    for ttl in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            budget.learn("x", rate=1.0, ttl=ttl)
    with pytest.raises(ValueError):
        budget.learn("", rate=1.0)
    with pytest.raises(ValueError):
        budget.forget("")
    assert client.dbsize() == 0  # nothing written


# --- Rates, clients and pipelines -----------------------------------------------------------


@rerun_when_late
def test_fractional_and_large_rates(client: redis.Redis, budget: RedisRateBudget) -> None:
    slow = [Bucket("slow", rate=0.5)]  # an interval of 2 s, a tolerance of 1 s
    first, before, after = timed_acquire(client, budget, slow)
    assert first == GRANTED
    due = tat(client, "slow")
    assert before + 2 * US <= due <= after + 2 * US
    for k in range(2):
        grant, before, after = timed_acquire(client, budget, slow)
        on_time(after, due - US)  # before its tolerance of 1 s begins
        assert_planned_at(grant, due + k * 2 * US, before, after)
    assert plan(client, "slow") == due + 4 * US

    fast = [Bucket("fast", rate=1000.0)]  # an interval of 1 ms
    first, before, after = timed_acquire(client, budget, fast)
    assert first == GRANTED
    assert before + 1_000 <= tat(client, "fast") <= after + 1_000
    budget.learn("fast", pause=0.3)  # hold it, so that the slots below are planned
    until = tat(client, "fast")
    for k in range(5):
        grant, before, after = timed_acquire(client, budget, fast)
        on_time(after, until)
        assert_planned_at(grant, until + k * 1_000, before, after)
        assert plan(client, "fast") == until + (k + 1) * 1_000
    sleep_until(client, until)
    granted, _, after = timed_acquire(client, budget, fast)
    assert granted == GRANTED
    assert until + 1_000 <= tat(client, "fast") <= after + 1_000


@rerun_when_late
def test_decoded_client_works(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        budget = RedisRateBudget(client)
        bucket = [Bucket("dec", rate=5.0, burst=0)]
        budget.learn("dec", rate=2.0)
        assert budget.effective_rate(bucket[0]) == 2.0
        assert budget.acquire(bucket) == GRANTED
        refused, _, after = timed_acquire(client, budget, bucket)
        on_time(after, tat(client, "dec"))
        assert refused.reserved
        assert 0 < refused.wait <= 0.5
        budget.learn("dec", pause=1.0)
        until = int(client.hget(f"{P}learned:dec", "pause_until") or 0)
        far, _, after = timed_acquire(client, budget, bucket, horizon=0.1)
        on_time(after, until - 100_000)
        assert not far.reserved
        load_scripts(client, budget.scripts)
        pipe = client.pipeline(transaction=False)
        parse = budget.acquire_later(pipe, bucket)
        grant = parse(pipe.execute()[0])
        on_time(redis_now(client), until - 500_000)
        assert grant.reserved
        assert 0.5 < grant.wait <= 1.0
        budget.forget("dec")
        assert budget.effective_rate(bucket[0]) == 5.0
    finally:
        client.close()


@rerun_when_late
def test_acquire_later_on_a_pipeline_answers_as_acquire(
    client: redis.Redis, budget: RedisRateBudget
) -> None:
    horizons = (30.0, 30.0, 0.5, 30.0)
    expected = [(True, False), (False, True), (False, False), (False, True)]

    def check(grants: list[Grant], key: str, before: int, after: int) -> None:
        due = tat(client, key)
        on_time(after, due)  # every ask before the first slot: one interval of 1 s
        assert [(g.allowed, g.reserved) for g in grants] == expected
        assert before + US <= due <= after + US
        # Planned at the TAT; then one interval on, too far for 0.5 s and planned for 30 s.
        for grant, slot in zip(grants[1:], (due, due + US, due + US), strict=True):
            assert before <= slot - wait_us(grant) <= after, (grant, slot)
        assert plan(client, key) == due + 2 * US

    # On the client itself, acquire_later runs at once and its parser ignores the reply.
    direct = [Bucket("direct", 1.0, burst=0)]
    before = redis_now(client)
    grants = [budget.acquire_later(client, direct, horizon=h)(None) for h in horizons]
    check(grants, "direct", before, redis_now(client))

    # On a pipeline (scripts loaded, as the caller must), alongside other commands.
    load_scripts(client, budget.scripts)
    piped = [Bucket("piped", 1.0, burst=0)]
    pipe = client.pipeline(transaction=False)
    pipe.time()
    parsers = [budget.acquire_later(pipe, piped, horizon=h) for h in horizons]
    pipe.time()
    replies = pipe.execute()
    (s0, us0), (s1, us1) = replies[0], replies[-1]
    grants = [parse(reply) for parse, reply in zip(parsers, replies[1:-1], strict=True)]
    check(grants, "piped", int(s0) * US + int(us0), int(s1) * US + int(us1))


# --- Across processes -----------------------------------------------------------------------


def test_budget_is_shared_across_processes(client: redis.Redis, redis_url: str) -> None:
    """Four processes start together and send 40 each through one 50/s budget: no second of
    Redis time holds more than the rate and its burst allow. The processes did overlap (each
    one's sends began before another's ended), so the bound is the shared budget's doing. How
    much of the rate they use is the benchmark's to measure (bench: utilisation), not a
    test's."""
    rate, burst, each, workers = 50.0, 0.1, 40, 4
    start_time = server_time(client)
    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
    ):
        barrier = manager.Barrier(workers)
        futures = [
            pool.submit(send_loop, redis_url, rate, burst, each, barrier) for _ in range(workers)
        ]
        per_process = [f.result(timeout=120) for f in futures]
    assert all(len(times) == each for times, _refused in per_process)
    assert all(refused > 0 for _times, refused in per_process), per_process
    spans = [(times[0], times[-1]) for times, _refused in per_process]
    for n, (first, _last) in enumerate(spans):
        assert any(first < last for m, (_f, last) in enumerate(spans) if m != n), spans
    sends = sorted(t for times, _refused in per_process for t in times)
    assert start_time <= sends[0] and sends[-1] <= server_time(client)

    bound = rate * 1.0 + rate * burst + 1
    end = 0
    for start, t in enumerate(sends):  # every 1-second window starting at a send
        while end < len(sends) and sends[end] < t + 1.0:
            end += 1
        assert end - start <= bound, f"{end - start} sends in the second after {t}"
