"""coordination.idempotency.IdempotencyStore on this machine's Redis: the life of one record."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import redis

from spark_integrations.constants import REDIS_IDEMPOTENCY_PREFIX
from spark_integrations.coordination.idempotency import Claim, IdempotencyStore, params_fingerprint

pytestmark = pytest.mark.server

FP = params_fingerprint({"text": "hello"})
OTHER_FP = params_fingerprint({"text": "goodbye"})
ALICE = "task-alice"
BOB = "task-bob"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def store(client: redis.Redis) -> IdempotencyStore:
    return IdempotencyStore(client)


@pytest.fixture
def record() -> str:
    return IdempotencyStore.record_key("conn-1", "create_message", "order-42")


# --- claim ------------------------------------------------------------------------------------


def test_first_claim_is_new_and_creates_a_running_record(
    store: IdempotencyStore, client: redis.Redis, record: str
) -> None:
    assert store.claim(record, FP, ALICE) == Claim("new", None)
    assert client.hgetall(record) == {"fp": FP, "state": "running", "owner": ALICE}


def test_record_gets_the_ttl(store: IdempotencyStore, client: redis.Redis, record: str) -> None:
    store.claim(record, FP, ALICE)
    assert 86_300 < client.ttl(record) <= 86_400


def test_custom_ttl(client: redis.Redis, record: str) -> None:
    IdempotencyStore(client, ttl=90).claim(record, FP, ALICE)
    assert 0 < client.ttl(record) <= 90


def test_repeat_claim_by_the_owner_is_mine(store: IdempotencyStore, record: str) -> None:
    store.claim(record, FP, ALICE)
    assert store.claim(record, FP, ALICE) == Claim("mine", None)


def test_claim_by_another_owner_is_busy_and_names_the_holder(
    store: IdempotencyStore, client: redis.Redis, record: str
) -> None:
    store.claim(record, FP, ALICE)
    assert store.claim(record, FP, BOB) == Claim("busy", ALICE)
    assert client.hget(record, "owner") == ALICE


def test_claim_with_other_params_is_a_conflict(
    store: IdempotencyStore, client: redis.Redis, record: str
) -> None:
    store.claim(record, FP, ALICE)
    assert store.claim(record, OTHER_FP, BOB) == Claim("conflict", None)
    assert store.claim(record, OTHER_FP, ALICE) == Claim("conflict", None)
    assert client.hget(record, "fp") == FP


def test_claims_on_different_records_are_independent(store: IdempotencyStore) -> None:
    one = store.record_key("conn-1", "create_message", "k1")
    two = store.record_key("conn-1", "create_message", "k2")
    assert store.claim(one, FP, ALICE).kind == "new"
    assert store.claim(two, FP, BOB).kind == "new"


# --- succeed ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [{"id": "m1", "text": "hello", "n": [1, 2.5, None, True]}, None, "ok", 0, [], ""],
)
def test_succeed_then_repeats_get_the_stored_outcome(
    store: IdempotencyStore, record: str, result: object
) -> None:
    store.claim(record, FP, ALICE)
    store.succeed(record, ALICE, result)
    assert store.claim(record, FP, BOB) == Claim("done", result)
    assert store.claim(record, FP, ALICE) == Claim("done", result)


def test_done_record_still_refuses_other_params(store: IdempotencyStore, record: str) -> None:
    store.claim(record, FP, ALICE)
    store.succeed(record, ALICE, {"id": "m1"})
    assert store.claim(record, OTHER_FP, BOB).kind == "conflict"


def test_succeed_keeps_the_ttl(store: IdempotencyStore, client: redis.Redis, record: str) -> None:
    store.claim(record, FP, ALICE)
    store.succeed(record, ALICE, {"id": "m1"})
    assert 0 < client.ttl(record) <= 86_400


def test_only_the_owner_settles(store: IdempotencyStore, client: redis.Redis, record: str) -> None:
    store.claim(record, FP, ALICE)
    store.succeed(record, BOB, {"id": "forged"})
    store.fail(record, BOB, "forged failure")
    assert client.hget(record, "state") == "running"
    assert store.claim(record, FP, BOB) == Claim("busy", ALICE)


def test_settling_a_missing_record_does_not_create_it(
    store: IdempotencyStore, client: redis.Redis, record: str
) -> None:
    store.succeed(record, ALICE, {"id": "m1"})
    store.fail(record, ALICE, "late")
    assert client.exists(record) == 0
    assert store.claim(record, FP, ALICE).kind == "new"


# --- fail -------------------------------------------------------------------------------------


def test_fail_is_sticky(store: IdempotencyStore, record: str) -> None:
    store.claim(record, FP, ALICE)
    store.fail(record, ALICE, "outcome unknown: read timeout")
    assert store.claim(record, FP, BOB) == Claim("failed", "outcome unknown: read timeout")
    assert store.claim(record, FP, ALICE) == Claim("failed", "outcome unknown: read timeout")
    # Releasing a failed record is the owner's right, but nobody else can clear it.
    store.release(record, BOB)
    assert store.claim(record, FP, BOB).kind == "failed"


def test_failed_record_refuses_other_params(store: IdempotencyStore, record: str) -> None:
    store.claim(record, FP, ALICE)
    store.fail(record, ALICE, "unknown")
    assert store.claim(record, OTHER_FP, ALICE).kind == "conflict"


# --- release and forget -----------------------------------------------------------------------


def test_release_by_the_owner_lets_a_repeat_try_again(
    store: IdempotencyStore, client: redis.Redis, record: str
) -> None:
    store.claim(record, FP, ALICE)
    store.release(record, ALICE)
    assert client.exists(record) == 0
    assert store.claim(record, OTHER_FP, BOB) == Claim("new", None)
    assert client.hget(record, "owner") == BOB


def test_release_by_another_owner_is_ignored(
    store: IdempotencyStore, client: redis.Redis, record: str
) -> None:
    store.claim(record, FP, ALICE)
    store.release(record, BOB)
    assert client.exists(record) == 1
    assert store.claim(record, FP, BOB) == Claim("busy", ALICE)


def test_release_of_a_missing_record_is_harmless(store: IdempotencyStore, record: str) -> None:
    store.release(record, ALICE)
    assert store.claim(record, FP, ALICE).kind == "new"


def test_forget_removes_a_record_whoever_holds_it(
    store: IdempotencyStore, client: redis.Redis, record: str
) -> None:
    store.claim(record, FP, ALICE)
    store.fail(record, ALICE, "unknown")
    store.forget(record)
    assert client.exists(record) == 0
    assert store.claim(record, FP, BOB) == Claim("new", None)
    store.forget(record)
    assert store.claim(record, FP, ALICE).kind == "new"


def test_whole_life_of_a_record(store: IdempotencyStore, record: str) -> None:
    assert store.claim(record, FP, ALICE).kind == "new"
    assert store.claim(record, FP, ALICE).kind == "mine"
    assert store.claim(record, FP, BOB) == Claim("busy", ALICE)
    assert store.claim(record, OTHER_FP, BOB).kind == "conflict"
    store.succeed(record, ALICE, {"id": "m1"})
    assert store.claim(record, FP, BOB) == Claim("done", {"id": "m1"})
    store.forget(record)
    assert store.claim(record, FP, BOB).kind == "new"


def test_store_works_without_decoded_responses(redis_url: str, record: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    try:
        store = IdempotencyStore(raw)
        assert store.claim(record, FP, ALICE) == Claim("new", None)
        assert store.claim(record, FP, BOB) == Claim("busy", ALICE)
        store.succeed(record, ALICE, {"id": "m1"})
        assert store.claim(record, FP, BOB) == Claim("done", {"id": "m1"})
        other = store.record_key("conn-1", "create_message", "other")
        store.claim(other, FP, ALICE)
        store.fail(other, ALICE, "unknown")
        assert store.claim(other, FP, BOB) == Claim("failed", "unknown")
    finally:
        raw.close()


# --- record_key and params_fingerprint --------------------------------------------------------


def test_record_key_hashes_the_callers_key(store: IdempotencyStore, client: redis.Redis) -> None:
    secret_key = "customer-jane.doe@example.test-invoice-7731"
    key = IdempotencyStore.record_key("conn-9", "create_message", secret_key)
    assert key.startswith(f"{REDIS_IDEMPOTENCY_PREFIX}conn-9:create_message:")
    digest = key.rsplit(":", 1)[1]
    assert len(digest) == 40
    assert all(c in "0123456789abcdef" for c in digest)
    assert secret_key not in key
    assert "jane" not in key
    store.claim(key, FP, ALICE)
    stored = client.keys("*")
    assert stored == [key]
    assert all(secret_key not in k for k in stored)


def test_record_key_is_stable_and_distinct() -> None:
    key = IdempotencyStore.record_key("c", "a", "k")
    assert IdempotencyStore.record_key("c", "a", "k") == key
    assert IdempotencyStore.record_key("c", "a", "k2") != key
    assert IdempotencyStore.record_key("c2", "a", "k") != key
    assert IdempotencyStore.record_key("c", "a2", "k") != key


def test_record_key_colons_in_the_callers_key_are_hashed_away() -> None:
    with_colons = IdempotencyStore.record_key("c", "a", "x:y:z")
    plain = IdempotencyStore.record_key("c", "a", "xyz")
    assert with_colons != plain
    assert with_colons.count(":") == plain.count(":")
    assert with_colons.rsplit(":", 1)[0] == plain.rsplit(":", 1)[0]


def test_fingerprint_ignores_key_order() -> None:
    assert params_fingerprint({"a": 1, "b": {"x": 1, "y": [1, 2]}}) == params_fingerprint(
        {"b": {"y": [1, 2], "x": 1}, "a": 1}
    )


def test_fingerprint_tells_params_apart() -> None:
    base = params_fingerprint({"a": 1, "b": [1, 2]})
    assert params_fingerprint({"a": 2, "b": [1, 2]}) != base
    assert params_fingerprint({"a": 1, "b": [2, 1]}) != base  # list order matters
    assert params_fingerprint({"a": "1", "b": [1, 2]}) != base
    assert params_fingerprint({"a": 1}) != base
    assert params_fingerprint({}) != params_fingerprint(None)


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    fp = params_fingerprint({"text": "hello"})
    assert len(fp) == 64
    assert int(fp, 16) >= 0
    assert fp == FP


def test_fingerprint_handles_non_json_values() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert params_fingerprint({"at": when}) == params_fingerprint({"at": when})
    assert params_fingerprint({"at": when}) == params_fingerprint({"at": str(when)})
