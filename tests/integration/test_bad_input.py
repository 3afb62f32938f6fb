"""Bad input never hurts other calls, and no secret reaches an error, through real workers.

Generated bad calls (hypothesis: malformed idempotency keys, non-finite numbers, params of the
wrong type, values that cannot be sent, ids the store cannot hold, secrets put where they do
not belong) go to real workers interleaved with good ones, and a call on a connection whose
stored key cannot travel in a header (stored before the check existed). Each bad call fails at
once with one sentence and a dead letter: no request, no retry, never ``outcome_unknown``, no
mark on the circuit breaker; every good call succeeds. Then logs, Redis, task outcomes and dead
letters are scanned for the secrets. The unit-level properties over 1,000 cases each of the same
checks are in ``tests/unit/test_properties_actions.py`` and ``tests/unit/test_task_kwargs.py``.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spark_integrations.constants import REDIS_BREAKER_PREFIX
from spark_integrations.store import Connection, DeadLetter, SecretBox, session_scope
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    client_app,
    dead_letters,
    outcome,
    run_cli,
    send_call,
    start_sandbox,
    start_workers,
)
from tests.integration.test_secrets import redis_dump

pytestmark = pytest.mark.server

API_KEY = "sk-live-" + uuid.uuid4().hex
# A key stored before secrets were checked: a header cannot carry it.
BROKEN_KEY = "sk-broken-" + uuid.uuid4().hex + "\r\nX-Leak: " + uuid.uuid4().hex
# A secret a caller puts where it does not belong (in params, under a secret-looking name).
CALLER_SECRET = "cs-" + uuid.uuid4().hex
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)

BAD_KEYS = st.one_of(
    st.sampled_from(["", " x", "x ", "a\nb", "caf\u00e9", "\ud800", "k" * 256, "\x00"]),
    st.integers(),
    st.lists(st.integers(), max_size=1),
    ANY_TEXT.filter(lambda s: not s.isascii() or not s.isprintable() or not s.strip()),
)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def bad_call(draw: st.DrawFn, good_id: str) -> tuple[str, dict[str, Any]]:
    """One malformed integrations.call: which kind, and its kwargs."""
    kind = draw(
        st.sampled_from(
            ["key", "non_finite", "wrong_type", "unsendable", "bad_id", "secret_param", "extra"]
        )
    )
    kwargs: dict[str, Any] = {"connection_id": good_id, "action": "create_message"}
    if kind == "key":
        kwargs["params"] = {"text": "k"}
        kwargs["idempotency_key"] = draw(BAD_KEYS)
    elif kind == "non_finite":
        number = draw(NON_FINITE)
        kwargs["params"] = draw(st.sampled_from([{"text": number}, {"text": "n", "n": [number]}]))
    elif kind == "wrong_type":
        kwargs["params"] = {
            "text": draw(st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2)))
        }
    elif kind == "unsendable":
        kwargs["action"] = "get_message"
        kwargs["params"] = {"id": draw(st.sampled_from(["", ".", "..", "a/../b", "\ud800x"]))}
    elif kind == "bad_id":
        kwargs["connection_id"] = draw(
            st.one_of(st.sampled_from(["a\x00b", "\ud800", "x" * 5000, ""]), st.integers())
        )
        kwargs["params"] = {"text": "i"}
    elif kind == "secret_param":
        kwargs["params"] = {"text": "s", "clientSecret": CALLER_SECRET}
    else:
        kwargs["params"] = {"text": "e"}
        kwargs["api_key"] = CALLER_SECRET
    return kind, kwargs


def breaker_failures(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        found = {}
        for key in client.scan_iter(f"{REDIS_BREAKER_PREFIX}*"):
            if client.type(key) == "hash":
                found[key] = int(client.hget(key, "failures") or 0)
        return {k: v for k, v in found.items() if v}
    finally:
        client.close()


def test_bad_input_fails_at_once_hurts_no_other_call_and_leaks_no_secret(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}")
    config = {"base_url": box.url, "rate_limit": 500, "breaker_fail_max": 1}
    good = add_connection(redis_env, "good", config, f"api_key={API_KEY}")
    broken = add_connection(redis_env, "broken", config, "api_key=placeholder")
    keys = SecretBox(redis_env["SPARK_INTEGRATIONS_SECRET_KEYS"].split(","))
    with session_scope(redis_env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        row = session.get(Connection, broken)
        assert row is not None
        row.credentials = keys.encrypt_json({"api_key": BROKEN_KEY})
    start_workers(redis_env, short_tmp, processes, concurrency=2)
    app = client_app(redis_env)
    seen: list[tuple[str, Any, bool, Any]] = []
    goods = 0

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(case=bad_call(good))
    def bad_and_good(case: tuple[str, dict[str, Any]]) -> None:
        nonlocal goods
        kind, kwargs = case
        bad = app.send_task("integrations.call", kwargs=kwargs, queue="integrations.calls")
        fine = send_call(app, good, "create_message", {"text": f"good-{goods}"})
        goods += 1
        ok, error = outcome(bad, timeout=60)
        seen.append((kind, kwargs, ok, error))
        assert not ok, f"{kind} was accepted: {kwargs!r}"
        assert isinstance(error, str) and "\n" not in error and len(error) < 400, error
        assert "outcome_unknown" not in error
        done, answer = outcome(fine, timeout=60)
        assert done and answer["attempts"] == 1, answer

    bad_and_good()

    # The stored key a header cannot carry: refused before anything is sent, quoted nowhere.
    ok, error = outcome(send_call(app, broken, "create_message", {"text": "b"}), timeout=60)
    assert not ok and "cannot be sent in an HTTP header" in error and "outcome_unknown" not in error

    assert len(seen) >= 30 and {kind for kind, *_ in seen} >= {"key", "non_finite", "wrong_type"}
    stats = box.stats()
    assert stats["requests"] == goods  # no bad call reached the provider
    assert breaker_failures(redis_env["SPARK_INTEGRATIONS_REDIS_URL"]) == {}
    letters = dead_letters(redis_env)
    assert len(letters) == len(seen) + 1
    assert all(letter["attempts"] == 0 for letter in letters if letter["connection_id"] != broken)
    errors = {letter["error"] for letter in letters}
    assert all(error in errors for *_, error in seen)

    # A replay sends exactly what was sent: NaN stays NaN (the displayed copy says "nan", a
    # string this action would accept), so the replayed call fails as the first did.
    ok, first = outcome(send_call(app, good, "create_message", {"text": math.nan}), timeout=60)
    assert not ok
    letter = next(d for d in dead_letters(redis_env) if d["error"] == first)  # newest first
    replay = run_cli(redis_env, "dlq", "replay", letter["id"], "--json")
    assert replay.returncode == 0, replay.stderr
    [sent] = json.loads(replay.stdout)
    ok, again = outcome(app.AsyncResult(sent["task_id"]), timeout=60)
    assert not ok and again == first
    assert box.stats()["requests"] == goods

    # The scan: nothing of a secret in Redis, the dead letters, the task outcomes, the logs.
    with session_scope(redis_env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        shown = [json.dumps(d.kwargs) for d in session.query(DeadLetter)]
        sealed = b"".join(bytes(d.replay_kwargs or b"") for d in session.query(DeadLetter))
    blobs = {
        "redis": redis_dump(redis_env["SPARK_INTEGRATIONS_REDIS_URL"]),
        "dead letters": (json.dumps(dead_letters(redis_env)) + "".join(shown)).encode() + sealed,
        "outcomes": json.dumps([str(e) for *_, e in seen] + [error]).encode(),
        "logs": b"".join(p.log.read_bytes() for p in processes if isinstance(p, FleetProcess)),
    }
    assert b"integrations.call" in blobs["logs"]
    for secret in (API_KEY, BROKEN_KEY, BROKEN_KEY.split("\r\n")[0], CALLER_SECRET):
        for where, blob in blobs.items():
            if where == "redis" and secret == CALLER_SECRET:
                continue  # a caller's own kwargs, in its own message on the broker
            assert secret.encode() not in blob, f"a secret is in the {where}"
