"""tasks.retrypolicy: full-jitter backoff, the provider's wait, and the retry budget."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from spark_integrations.tasks.retrypolicy import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    RetryBudget,
    backoff,
    retry_wait,
)

SAMPLES = 2000


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """A fixed seed, so sample-based checks are reproducible; the global state is restored."""
    state = random.getstate()
    random.seed(20240611)
    yield
    random.setstate(state)


@pytest.fixture
def top_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """random.uniform(a, b) returns b: the policy's ceiling, exactly."""
    monkeypatch.setattr(random, "uniform", lambda a, b: b)


@pytest.fixture
def bottom_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """random.uniform(a, b) returns a: the policy's floor, exactly."""
    monkeypatch.setattr(random, "uniform", lambda a, b: a)


def ceiling(failures: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    return float(min(cap, base * 2 ** (failures - 1)))


# --- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 8, 12, 30])
def test_backoff_samples_stay_within_full_jitter_range(failures: int) -> None:
    top = ceiling(failures)
    samples = [backoff(failures) for _ in range(SAMPLES)]
    assert all(0.0 <= s <= top for s in samples)
    # Full jitter spreads over the whole range, not a narrow band near the top.
    assert min(samples) < top * 0.05
    assert max(samples) > top * 0.95


@pytest.mark.usefixtures("top_of_range")
def test_backoff_ceiling_doubles_then_caps() -> None:
    assert [backoff(n) for n in range(1, 10)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff(1000) == BACKOFF_CAP


@pytest.mark.usefixtures("bottom_of_range")
def test_backoff_floor_is_zero() -> None:
    assert {backoff(n) for n in range(1, 20)} == {0.0}


def test_backoff_sampled_ceiling_grows_with_failures() -> None:
    highest = [max(backoff(n) for _ in range(SAMPLES)) for n in range(1, 9)]
    assert highest == sorted(highest)
    for n in range(2, 8):
        # Each ceiling is above the previous one: samples reach past the old limit.
        assert highest[n - 1] > ceiling(n - 1)


@pytest.mark.usefixtures("top_of_range")
@pytest.mark.parametrize("failures", [0, -3])
def test_backoff_with_no_failures_uses_the_base(failures: int) -> None:
    assert backoff(failures) == BACKOFF_BASE


@pytest.mark.usefixtures("top_of_range")
def test_backoff_custom_base_and_cap() -> None:
    assert [backoff(n, base=2.0, cap=10.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_custom_range_samples() -> None:
    samples = [backoff(4, base=0.1, cap=0.5) for _ in range(SAMPLES)]
    assert all(0.0 <= s <= 0.5 for s in samples)
    assert max(samples) > 0.45


# --- retry_wait -------------------------------------------------------------------------------


@pytest.mark.parametrize("wait", [0.001, 0.5, 3.0, 9.9, 10.0, 25.0, 300.0])
def test_retry_wait_honours_the_provider(wait: float) -> None:
    jitter = min(1.0, wait * 0.1)
    samples = [retry_wait(1, wait) for _ in range(SAMPLES)]
    assert all(wait <= s <= wait + jitter for s in samples)


@pytest.mark.usefixtures("top_of_range")
def test_retry_wait_jitter_is_ten_percent_capped_at_one_second() -> None:
    assert retry_wait(1, 5.0) == pytest.approx(5.5)
    assert retry_wait(1, 10.0) == pytest.approx(11.0)
    assert retry_wait(1, 30.0) == pytest.approx(31.0)
    assert retry_wait(7, 3600.0) == pytest.approx(3601.0)


@pytest.mark.usefixtures("bottom_of_range")
def test_retry_wait_never_below_the_providers_wait() -> None:
    assert retry_wait(1, 5.0) == 5.0
    assert retry_wait(9, 0.2) == 0.2


def test_retry_wait_provider_wait_wins_over_a_longer_backoff() -> None:
    # After many failures backoff could reach 60 s; the provider said 2 s.
    samples = [retry_wait(20, 2.0) for _ in range(SAMPLES)]
    assert max(samples) <= 2.2


@pytest.mark.parametrize("wait", [None, 0.0, -5.0])
def test_retry_wait_without_a_provider_wait_is_backoff(wait: float | None) -> None:
    for failures in (1, 4, 10):
        samples = [retry_wait(failures, wait) for _ in range(SAMPLES)]
        assert all(0.0 <= s <= ceiling(failures) for s in samples)
        assert max(samples) > ceiling(failures) * 0.9


@pytest.mark.usefixtures("top_of_range")
def test_retry_wait_falls_back_on_the_backoff_ceiling() -> None:
    assert retry_wait(3, None) == 2.0
    assert retry_wait(3, 0) == 2.0


# --- RetryBudget ------------------------------------------------------------------------------


def test_budget_defaults() -> None:
    budget = RetryBudget()
    assert (budget.attempts, budget.window) == (8, 600.0)


@pytest.mark.parametrize(
    ("attempts_made", "elapsed", "wait", "allowed"),
    [
        (0, 0.0, 0.0, True),
        (1, 10.0, 5.0, True),
        (2, 10.0, 5.0, True),
        (3, 10.0, 5.0, False),  # attempts used up
        (4, 0.0, 0.0, False),
        (1, 50.0, 10.0, True),  # exactly at the window's end
        (1, 50.0, 10.001, False),
        (1, 61.0, 0.0, False),  # the window is over already
        (0, 0.0, 61.0, False),  # a provider wait longer than the whole window
    ],
)
def test_budget_allows(attempts_made: int, elapsed: float, wait: float, allowed: bool) -> None:
    assert RetryBudget(attempts=3, window=60.0).allows(attempts_made, elapsed, wait) is allowed


def test_budget_of_one_attempt_allows_only_the_first() -> None:
    budget = RetryBudget(attempts=1, window=600.0)
    assert budget.allows(0, 0.0, 0.0) is True
    assert budget.allows(1, 0.0, 0.0) is False


def test_budget_is_frozen() -> None:
    with pytest.raises(AttributeError):
        RetryBudget().attempts = 3  # type: ignore[misc]
