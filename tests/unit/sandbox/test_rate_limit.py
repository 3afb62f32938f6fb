"""Per-credential token buckets on the API, and their headers.

Buckets that must stay empty refill so slowly (once in minutes) that no pause of the test
machine can refill them between two requests: nothing here depends on how fast it runs.
"""

from __future__ import annotations

import time

import requests

from spark_integrations.sandbox import SandboxServer
from tests.unit.sandbox.conftest import StartSandbox
from tests.unit.sandbox.helpers import stats

ITEM = "/v1/items/item-000001"


def test_bucket_empties_then_429(start_sandbox: StartSandbox, api: requests.Session) -> None:
    srv = start_sandbox(rate_limit=0.01, burst=300)  # 3 tokens, one more every 100 s
    remaining = []
    for _ in range(3):
        with api.get(srv.url + ITEM) as answer:
            assert answer.status_code == 200
            assert answer.headers["X-RateLimit-Limit"] == "0.01"
            assert int(answer.headers["X-RateLimit-Reset"]) >= int(time.time())
            remaining.append(int(answer.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    with api.get(srv.url + ITEM) as answer:
        assert answer.status_code == 429
        assert answer.json()["error"] == "rate_limited"
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.headers["X-RateLimit-Remaining"] == "0"
        assert int(answer.headers["X-RateLimit-Reset"]) > time.time()
    # Another credential has its own bucket.
    with api.get(
        srv.url + ITEM, headers={"X-API-Key": None}, auth=("sandbox", "sandbox-secret")
    ) as a:
        assert a.status_code == 200 and a.headers["X-RateLimit-Remaining"] == "2"
    assert stats(srv.url)["rate_limited"] == 1


def test_capacity_is_at_least_one(start_sandbox: StartSandbox, api: requests.Session) -> None:
    srv = start_sandbox(rate_limit=0.025, burst=0.1)  # 0.0025 tokens: one, refilled in 40 s
    with api.get(srv.url + ITEM) as answer:
        assert answer.status_code == 200
        assert answer.headers["X-RateLimit-Limit"] == "0.025"
        assert answer.headers["X-RateLimit-Remaining"] == "0"
    with api.get(srv.url + ITEM) as answer:
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1


def test_unlimited_has_no_headers(sandbox: SandboxServer, api: requests.Session) -> None:
    for _ in range(20):
        with api.get(sandbox.url + ITEM) as answer:
            assert answer.status_code == 200
            assert not any(h.lower().startswith("x-ratelimit") for h in answer.headers)


def test_unauthenticated_and_control_requests_take_no_token(
    start_sandbox: StartSandbox, http: requests.Session
) -> None:
    srv = start_sandbox(rate_limit=1, burst=1)
    with http.get(srv.url + ITEM) as answer:
        assert answer.status_code == 401 and "X-RateLimit-Limit" not in answer.headers
    for _ in range(5):
        with http.get(f"{srv.url}/_sandbox/stats") as answer:
            assert answer.status_code == 200
    with http.get(srv.url + ITEM, auth=("sandbox", "sandbox-secret")) as answer:
        assert answer.status_code == 200
