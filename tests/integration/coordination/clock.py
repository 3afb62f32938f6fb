"""Tests on Redis's clock that never depend on the machine's speed.

Where an answer depends on asking before some instant (a refusal while a slot is still ahead, a
probe still held), a test checks with reads of Redis's clock that it did ask in time
(:func:`on_time`). A test that was itself too late (the machine stalled) proves nothing about
the code under test: it runs its scenario again on a clean database (:func:`rerun_when_late`)
instead of failing, or passing, by luck.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis


class Late(Exception):
    """The test asked after the instant its scenario needed: a stall of the machine."""


def on_time(after: int | float, deadline: int | float) -> None:
    """Go on only if the last ask (Redis's clock read just after it) came before ``deadline``."""
    if after >= deadline:
        raise Late(f"asked at {after}, after {deadline}")


def rerun_when_late(test: Callable[..., None]) -> Callable[..., None]:
    """Run the test again (its database flushed) when it was too late for its own scenario.

    The test takes the ``client`` fixture, or ``redis_url``."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        for _attempt in range(5):
            try:
                test(*args, **kwargs)
                return
            except Late:
                flush = redis.Redis.from_url(kwargs["redis_url"]) if "redis_url" in kwargs else None
                (flush or kwargs["client"]).flushdb()
                if flush is not None:
                    flush.close()
        pytest.fail("five runs in a row stalled past their scenario's instants")

    return run
