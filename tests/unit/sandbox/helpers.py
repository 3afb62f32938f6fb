"""Helpers of the sandbox tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

API_KEY = "test-key"
RECORDS = 250


def stats(url: str) -> dict[str, Any]:
    """The sandbox's counters."""
    with requests.Session() as session:
        session.trust_env = False
        with session.get(f"{url}/_sandbox/stats", timeout=10) as answer:
            answer.raise_for_status()
            data: dict[str, Any] = answer.json()
    return data


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.02)
