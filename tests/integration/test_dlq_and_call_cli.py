"""``call`` from the command line, and dead letters listed and replayed (real workers, sandbox)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet import (
    add_connection,
    client_app,
    dead_letters,
    outcome,
    run_cli,
    send_call,
    start_sandbox,
    start_workers,
    wait_for,
)

pytestmark = pytest.mark.server
API_KEY = "sk-dlq-" + uuid.uuid4().hex


def test_call_command_waits_and_prints_the_result(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}")
    cid = add_connection(redis_env, "cli", {"base_url": box.url}, f"api_key={API_KEY}")
    start_workers(redis_env, short_tmp, processes, concurrency=1)
    done = run_cli(
        redis_env, "call", cid, "create_message", "--params", '{"text": "from the cli"}',
        "--idempotency-key", "cli-1", "--wait", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["ok"] is True and answer["data"]["text"] == "from the cli"
    queued = run_cli(
        redis_env, "call", cid, "create_message", "--params", '{"text": "q"}', "--json"
    )
    assert queued.returncode == 0, queued.stderr
    assert set(json.loads(queued.stdout)) == {"task_id"}
    # Refused before anything is queued: one sentence, exit 2.
    bad = run_cli(redis_env, "call", cid, "create_message", "--params", '{"text": 1}')
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("must be a string.") and "Traceback" not in bad.stderr
    bad_json = run_cli(redis_env, "call", cid, "create_message", "--params", "{oops")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    unknown = run_cli(redis_env, "call", "no-such-id", "create_message")
    assert unknown.returncode == 1 and "no connection has the id" in unknown.stderr
    wait_for(lambda: box.stats()["messages_created"] == 2, 60, "the queued call")


def test_a_dead_letter_replayed_after_the_cause_is_fixed_succeeds(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """A call refused for bad credentials is dead-lettered; fix the secret, replay: it succeeds."""
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}")
    cid = add_connection(redis_env, "fixme", {"base_url": box.url}, "api_key=wrong-key")
    start_workers(redis_env, short_tmp, processes, concurrency=1)
    app = client_app(redis_env)
    ok, error = outcome(send_call(app, cid, "create_message", {"text": "later"}, key="fix-1"))
    assert not ok and "refused the credentials" in error
    [letter] = dead_letters(redis_env)
    assert letter["connection_id"] == cid and letter["action"] == "create_message"
    assert letter["attempts"] == 1 and letter["replayed_at"] is None
    assert "refused the credentials" in letter["error"]

    fixed = run_cli(redis_env, "connections", "update", cid, "--secret", f"api_key={API_KEY}")
    assert fixed.returncode == 0, fixed.stderr
    replay = run_cli(redis_env, "dlq", "replay", letter["id"], "--json")
    assert replay.returncode == 0, replay.stderr
    [sent] = json.loads(replay.stdout)
    answer = app.AsyncResult(sent["task_id"]).get(timeout=60)
    assert answer["ok"] is True and answer["data"]["text"] == "later"
    [letter] = dead_letters(redis_env)
    assert letter["replayed_at"] is not None
    assert run_cli(redis_env, "dlq", "replay", "--all", "--json").stdout.strip() == "[]"
    missing = run_cli(redis_env, "dlq", "replay", "nope")
    assert missing.returncode == 1 and "no dead letter" in missing.stderr
    both = run_cli(redis_env, "dlq", "replay")
    assert both.returncode == 2


def test_replaying_an_unknown_outcome_sends_it_once_more(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """outcome_unknown blocks repeats of its key; an operator's replay lifts that, once."""
    box = start_sandbox(
        redis_env, short_tmp, processes, f"--api-key={API_KEY}", "--fault-rate=1",
        "--fault-kinds=500",
    )  # fmt: skip
    config = {"base_url": box.url, "breaker_fail_max": 1000}
    cid = add_connection(redis_env, "unknown", config, f"api_key={API_KEY}")
    start_workers(redis_env, short_tmp, processes, concurrency=1)
    app = client_app(redis_env)
    ok, error = outcome(send_call(app, cid, "create_message_unkeyed", {"text": "u"}, key="u-1"))
    assert not ok and "outcome_unknown" in error
    ok, again = outcome(send_call(app, cid, "create_message_unkeyed", {"text": "u"}, key="u-1"))
    assert not ok and "failed" in again  # the key's unknown outcome stands
    requests_before = box.stats()["requests"]
    assert requests_before == 1
    import requests

    requests.post(box.url + "/_sandbox/faults", json={"rate": 0}, timeout=10).raise_for_status()
    first = dead_letters(redis_env)[-1]  # oldest: the call itself
    replay = run_cli(redis_env, "dlq", "replay", first["id"], "--json")
    assert replay.returncode == 0, replay.stderr
    [sent] = json.loads(replay.stdout)
    assert app.AsyncResult(sent["task_id"]).get(timeout=60)["ok"] is True
    texts = Counter(m["text"] for m in box.messages())
    assert texts["u"] <= 2  # the lost one (maybe created) and the replay
