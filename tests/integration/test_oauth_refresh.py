"""OAuth tokens across the fleet: one refresh per expiry, whatever the concurrency and crashes.

Real workers, the real sandbox with rotating single-use refresh tokens (a used one answers
``invalid_grant`` and revokes the family), PostgreSQL and Redis. The sandbox's counters are the
evidence: ``token_refreshes`` counts refresh grants it honoured, ``invalid_grants`` refusals.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from spark_integrations.store import OAuthToken, session_scope
from spark_integrations.store.types import utcnow
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
from tests.integration.oauth_helpers import (
    CLIENT,
    CLIENT_SECRET,
    connect_directly,
    connection_row,
    expire_in_store,
    raw_token_columns,
    refresher_killed_at,
    sandbox_revoke,
    stored_token,
)

pytestmark = pytest.mark.server


def oauth_connection(env: dict[str, str], sandbox_url: str, name: str) -> str:
    config = {"base_url": sandbox_url, **CLIENT, "rate_limit": 1000}
    cid = add_connection(env, name, config, CLIENT_SECRET)
    connect_directly(env, cid, sandbox_url)
    return cid


def wait_expired(env: dict[str, str], cid: str) -> None:
    """Sleep until the stored access token has expired by the fleet's clock."""
    token = stored_token(env, cid)
    assert token is not None and token.expires_at is not None
    remaining = token.remaining()
    assert remaining is not None
    time.sleep(max(0.0, remaining) + 0.05)


def running_calls(app: Any, workers: int) -> int:
    """How many ``integrations.call`` tasks the workers are running now (asked by broadcast)."""
    replies = app.control.inspect(timeout=10, limit=workers).active() or {}
    return sum(1 for tasks in replies.values() for t in tasks if t["name"] == "integrations.call")


def set_token_times(
    env: dict[str, str], connection_id: str, *, obtained_ago: float, expires_in: float
) -> None:
    """Make the stored token look obtained ``obtained_ago`` s ago, expiring in ``expires_in`` s
    (the fleet's view; the provider's own token is untouched)."""
    now = utcnow()
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        token = session.get(OAuthToken, connection_id)
        assert token is not None
        token.obtained_at = now - timedelta(seconds=obtained_ago)
        token.expires_at = now + timedelta(seconds=expires_in)


def all_ok(results: list[Any], timeout: float = 120) -> list[Any]:
    seen = [outcome(r, timeout=timeout) for r in results]
    failures = [value for ok, value in seen if not ok]
    assert not failures, failures[:3]
    return [value for _ok, value in seen]


def test_sixty_four_calls_on_an_expired_token_refresh_once_twenty_rounds_in_a_row(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """2 worker processes of concurrency 4, 64 calls at once on an expired rotating token:
    exactly one refresh per expiry and no invalid_grant, twenty rounds in a row.

    A token lives 2 s by the fleet's clock, counted from when its refresh request left. A round
    that outlasts that (a loaded machine, or round 0 whose refresh the test holds) meets the
    expiry again, and one more refresh per 2 s is then the right answer, not a race. A race
    shows otherwise: an ``invalid_grant`` (a used refresh token sent again), a 401, an early
    refresh (a token refreshed with more than half its life left) or more refreshes in a round
    than its length allows."""
    box = start_sandbox(redis_env, short_tmp, processes, "--token-ttl=2", "--rate-limit=1000")
    cid = oauth_connection(redis_env, box.url, "race")
    start_workers(redis_env, short_tmp, processes, count=2, concurrency=4)
    app = client_app(redis_env)
    all_ok([send_call(app, cid, "create_message", {"text": "warm-up"})])
    per_round = []
    for rnd in range(20):
        wait_expired(redis_env, cid)
        before = box.stats()
        started = time.monotonic()
        if rnd == 0:
            # The race, seen: the one refresh is held at the provider while several calls are
            # running, and none has sent a request: they all wait for that refresh.
            box.hold("token")
        results = [
            send_call(app, cid, "create_message", {"text": f"r{rnd}-{i}"}) for i in range(64)
        ]
        if rnd == 0:
            try:
                wait_for(lambda: box.stats()["held"] == 1, 60, "the refresh to reach the provider")
                waiting = running_calls(app, workers=2)
                held = box.stats()
            finally:
                box.release()
            assert waiting >= 2 and held["held"] == 1, (waiting, held)
            assert held["requests"] == before["requests"], "a call went on without the token"
        all_ok(results)
        expiries = 1 + int((time.monotonic() - started) // 2.0)
        after = box.stats()
        per_round.append(
            (
                after["token_refreshes"] - before["token_refreshes"],
                after["invalid_grants"] - before["invalid_grants"],
                after["unauthorized"] - before["unauthorized"],
                expiries,
            )
        )
    assert all(1 <= refreshes <= expiries for refreshes, _, _, expiries in per_round), per_round
    assert [(invalid, unauthorized) for _, invalid, unauthorized, _ in per_round] == [(0, 0)] * 20
    assert box.stats()["early_refreshes"] == 0
    assert connection_row(redis_env, cid)[0] == "active"


def test_a_401_refreshes_once_and_the_call_succeeds(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """The provider expires the token early: the call refreshes once after the 401."""
    box = start_sandbox(redis_env, short_tmp, processes, "--token-ttl=3600")
    cid = oauth_connection(redis_env, box.url, "early-expiry")
    start_workers(redis_env, short_tmp, processes, count=1, concurrency=2)
    app = client_app(redis_env)
    all_ok([send_call(app, cid, "create_message", {"text": "one"})])
    sandbox_revoke(box.url, all=True)
    before = box.stats()
    result = all_ok([send_call(app, cid, "create_message", {"text": "two"})])[0]
    after = box.stats()
    assert result["ok"] is True
    assert after["token_refreshes"] - before["token_refreshes"] == 1
    assert after["invalid_grants"] == before["invalid_grants"] == 0


@pytest.mark.slow
def test_refresher_killed_before_sending_or_after_storing_recovers(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """SIGKILL before the refresh request leaves, or after its answer is stored: calls go on
    with a fresh token and the provider sees no used refresh token."""
    box = start_sandbox(redis_env, short_tmp, processes, "--token-ttl=60", "--rate-limit=1000")
    cid = oauth_connection(redis_env, box.url, "killed")
    start_workers(redis_env, short_tmp, processes, count=1, concurrency=4)
    app = client_app(redis_env)
    for point in ("before-send", "after-store"):
        # Expired by the fleet's clock (the workers have not read it yet): calls must refresh.
        expire_in_store(redis_env, cid)
        version = stored_token(redis_env, cid).version  # type: ignore[union-attr]
        refresher_killed_at(redis_env, cid, point)
        token = stored_token(redis_env, cid)
        assert token is not None
        if point == "before-send":
            assert token.version == version and token.pending_by is None
        else:
            assert token.version == version + 1 and token.pending_by is None
        results = [
            send_call(app, cid, "create_message", {"text": f"{point}-{i}"}) for i in range(8)
        ]
        all_ok(results, timeout=90)
        assert connection_row(redis_env, cid)[0] == "active"
    stats = box.stats()
    assert stats["invalid_grants"] == 0
    # before-send: a call refreshed once the dead holder's lock expired; after-store: the dead
    # refresher's own refresh, whose stored token the calls then used.
    assert stats["token_refreshes"] == 2


@pytest.mark.slow
def test_refresher_killed_between_request_and_store_ends_needs_reauth(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """SIGKILL after the provider rotated the token but before the answer was stored: the
    connection turns needs_reauth and says why; nothing presents the used refresh token; calls
    are dead-lettered without retries; connecting again heals it."""
    box = start_sandbox(redis_env, short_tmp, processes, "--token-ttl=2", "--rate-limit=1000")
    cid = oauth_connection(redis_env, box.url, "window")
    start_workers(redis_env, short_tmp, processes, count=1, concurrency=4)
    app = client_app(redis_env)
    wait_expired(redis_env, cid)
    refresher_killed_at(redis_env, cid, "after-send")
    token = stored_token(redis_env, cid)
    assert token is not None and token.pending_by is not None
    results = [send_call(app, cid, "create_message", {"text": f"w-{i}"}) for i in range(6)]
    errors = [value for ok, value in (outcome(r, timeout=90) for r in results) if not ok]
    assert len(errors) == 6
    assert all("needs re-authorisation" in e or "needs_reauth" in e for e in errors), errors[:2]
    status, reason = connection_row(redis_env, cid)
    assert status == "needs_reauth"
    assert reason is not None and "interrupted" in reason and "connect" in reason
    stats = box.stats()
    assert stats["token_refreshes"] == 1  # the dead refresher's own
    assert stats["invalid_grants"] == 0
    assert stats["messages_created"] == 0
    assert connection_row(redis_env, cid)[0] == "needs_reauth"
    letters = [d for d in dead_letters(redis_env) if d["connection_id"] == cid]
    assert len(letters) == 6 and all(d["attempts"] == 0 for d in letters)
    listed = run_cli(redis_env, "connections", "list", "--json")
    assert {"id": cid, "status": "needs_reauth"}.items() <= next(
        c for c in json.loads(listed.stdout) if c["id"] == cid
    ).items()
    doctor = run_cli(redis_env, "doctor")
    assert doctor.returncode == 1 and "Needing re-authorisation: window" in doctor.stdout

    connect_directly(redis_env, cid, box.url)
    # Workers cache a connection's status for a moment: the first calls may still be refused.
    wait_for(
        lambda: outcome(send_call(app, cid, "create_message", {"text": "healed"}))[0],
        60,
        "a call on the reconnected connection to succeed",
    )
    assert connection_row(redis_env, cid) == ("active", None)
    assert box.stats()["invalid_grants"] == 0


def test_invalid_grant_turns_the_connection_needs_reauth_without_a_retry_storm(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """The refresh token was used elsewhere: one invalid_grant, then no more requests."""
    box = start_sandbox(redis_env, short_tmp, processes, "--token-ttl=2", "--rate-limit=1000")
    cid = oauth_connection(redis_env, box.url, "stolen")
    token = stored_token(redis_env, cid)
    assert token is not None and token.refresh_token
    stolen = requests.post(
        f"{box.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token.refresh_token},
        auth=("sandbox", "sandbox-secret"),
        timeout=10,
    )
    assert stolen.status_code == 200
    start_workers(redis_env, short_tmp, processes, count=1, concurrency=4)
    app = client_app(redis_env)
    wait_expired(redis_env, cid)
    before = box.stats()
    results = [send_call(app, cid, "create_message", {"text": f"s-{i}"}) for i in range(10)]
    errors = [value for ok, value in (outcome(r, timeout=90) for r in results) if not ok]
    after = box.stats()
    assert len(errors) == 10
    assert after["invalid_grants"] - before["invalid_grants"] == 1
    assert after["requests"] == before["requests"]  # no API request with a dead token
    status, reason = connection_row(redis_env, cid)
    assert status == "needs_reauth" and reason is not None and "invalid_grant" in reason


def test_client_credentials_tokens_are_shared_through_the_store(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """A client-credentials connection is active at once; the fleet fetches one token for all
    its workers and fetches again only after expiry."""
    box = start_sandbox(redis_env, short_tmp, processes, "--token-ttl=3", "--rate-limit=1000")
    config = {
        "base_url": box.url,
        **CLIENT,
        "grant_type": "client_credentials",
        "rate_limit": 1000,
    }
    cid = add_connection(redis_env, "machine", config, CLIENT_SECRET)
    assert connection_row(redis_env, cid)[0] == "active"
    start_workers(redis_env, short_tmp, processes, count=2, concurrency=2)
    app = client_app(redis_env)
    all_ok([send_call(app, cid, "create_message", {"text": f"a{i}"}) for i in range(20)])
    assert box.stats()["client_credentials_grants"] == 1
    wait_expired(redis_env, cid)
    all_ok([send_call(app, cid, "create_message", {"text": f"b{i}"}) for i in range(20)])
    stats = box.stats()
    assert stats["client_credentials_grants"] == 2
    assert stats["token_refreshes"] == 0 and stats["invalid_grants"] == 0
    token = stored_token(redis_env, cid)
    assert token is not None and token.grant_type == "client_credentials"


def test_proactive_job_renews_only_tokens_within_their_margin(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """integrations.refresh_tokens renews a token within 10% of its lifetime of expiry, leaves
    a fresh one alone, and renews an idle one past config refresh_idle_after."""
    box = start_sandbox(redis_env, short_tmp, processes, "--token-ttl=20", "--rate-limit=1000")
    due = oauth_connection(redis_env, box.url, "due")
    fresh = add_connection(redis_env, "fresh", {"base_url": box.url, **CLIENT}, CLIENT_SECRET)
    idle = add_connection(
        redis_env,
        "idle",
        {"base_url": box.url, **CLIENT, "refresh_idle_after": 5},
        CLIENT_SECRET,
    )
    start_workers(redis_env, short_tmp, processes, count=1, concurrency=2)
    app = client_app(redis_env)
    connect_directly(redis_env, idle, box.url)
    connect_directly(redis_env, fresh, box.url)
    # As the fleet sees them (the store): 'due' has 1 s of its 20 left, within its last 10%;
    # 'idle' was obtained 8 s ago, past its refresh_idle_after of 5 s, with 12 s left; 'fresh'
    # has an hour left. Each stays so however long the job takes to come.
    set_token_times(redis_env, due, obtained_ago=19, expires_in=1)
    set_token_times(redis_env, idle, obtained_ago=8, expires_in=12)
    set_token_times(redis_env, fresh, obtained_ago=0, expires_in=3600)
    versions = {c: stored_token(redis_env, c).version for c in (due, fresh, idle)}  # type: ignore[union-attr]
    result = app.send_task("integrations.refresh_tokens", queue="integrations.maintenance").get(
        timeout=60
    )
    assert result == {"refreshed": 2, "failed": 0}
    after = {c: stored_token(redis_env, c).version for c in (due, fresh, idle)}  # type: ignore[union-attr]
    assert after == {due: versions[due] + 1, fresh: versions[fresh], idle: versions[idle] + 1}
    assert box.stats()["invalid_grants"] == 0


@pytest.mark.slow
def test_two_minutes_of_calls_and_proactive_refreshes_with_one_second_tokens(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """120 s with 1-s tokens, calls and the proactive job interleaving across two workers:
    the connection stays active, no invalid_grant, no refresh of a token with more than half
    its life left (at most one refresh per lifetime, counted by the provider)."""
    box = start_sandbox(redis_env, short_tmp, processes, "--token-ttl=1", "--rate-limit=1000")
    cid = oauth_connection(redis_env, box.url, "steady")
    start_workers(redis_env, short_tmp, processes, count=2, concurrency=2)
    app = client_app(redis_env)
    all_ok([send_call(app, cid, "create_message", {"text": "warm-up"})])
    before = box.stats()
    started = time.monotonic()
    pending: list[Any] = []
    jobs: list[Any] = []
    sent = 0
    next_job = started
    while time.monotonic() - started < 120:
        pending += [
            send_call(app, cid, "create_message", {"text": f"t{sent + i}"}) for i in range(4)
        ]
        sent += 4
        if time.monotonic() >= next_job:
            jobs.append(
                app.send_task("integrations.refresh_tokens", queue="integrations.maintenance")
            )
            next_job += 2.0
        if len(pending) > 64:
            all_ok(pending[:32])
            pending = pending[32:]
        time.sleep(0.05)
    all_ok(pending)
    elapsed = time.monotonic() - started
    after = box.stats()
    job_results = [j.get(timeout=60) for j in jobs]
    refreshes = after["token_refreshes"] - before["token_refreshes"]
    assert after["invalid_grants"] == 0
    assert connection_row(redis_env, cid)[0] == "active"
    assert all(r["failed"] == 0 for r in job_results)
    print(f"{sent} calls, {refreshes} refreshes in {elapsed:.1f} s, {len(jobs)} proactive runs")
    # At most one refresh per lifetime, as the provider counts: none while the token it
    # replaced still had more than half its life left.
    assert after["early_refreshes"] == 0, after
    assert after["unauthorized"] - before["unauthorized"] <= refreshes
    # Calls went on all along, so tokens were renewed again and again, not once.
    assert refreshes >= 10, refreshes


def test_tokens_and_client_secret_stay_encrypted_and_out_of_redis_and_logs(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """After refreshes and a needs_reauth: no token nor the client secret in plaintext in the
    store, Redis (kombu bodies decoded), results, dead letters or worker logs."""
    from tests.integration.test_secrets import redis_dump

    secret = "cs-" + uuid.uuid4().hex
    box = start_sandbox(
        redis_env,
        short_tmp,
        processes,
        "--token-ttl=2",
        "--rate-limit=1000",
        f"--client-secret={secret}",
    )
    config = {"base_url": box.url, **CLIENT, "rate_limit": 1000}
    cid = add_connection(redis_env, "scan", config, f"client_secret={secret}")
    connect_directly(redis_env, cid, box.url, client_secret=secret)
    first = stored_token(redis_env, cid)
    assert first is not None and first.refresh_token
    workers = start_workers(redis_env, short_tmp, processes, count=1, concurrency=2)
    app = client_app(redis_env)
    seen_tokens = {first.access_token, first.refresh_token}
    results = []
    for rnd in range(3):
        wait_expired(redis_env, cid)
        results += [send_call(app, cid, "create_message", {"text": f"x{rnd}{i}"}) for i in range(4)]
        all_ok(results[-4:])
        stored = stored_token(redis_env, cid)
        assert stored is not None
        seen_tokens |= {stored.access_token, stored.refresh_token or ""}
    sandbox_revoke(box.url, all=True)
    # A used refresh token presented by a thief kills the family: the next refresh fails.
    requests.post(
        f"{box.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first.refresh_token},
        auth=("sandbox", secret),
        timeout=10,
    )
    failed = outcome(send_call(app, cid, "create_message", {"text": "after-theft"}))
    assert failed[0] is False
    secrets = {s.encode() for s in seen_tokens | {secret} if s}
    dump = redis_dump(redis_env["SPARK_INTEGRATIONS_REDIS_URL"])
    logs = b"".join(Path(w.log).read_bytes() for w in workers)
    letters = str(dead_letters(redis_env)).encode()
    stored_raw = raw_token_columns(redis_env)
    for value in secrets:
        assert value not in dump
        assert value not in logs
        assert value not in letters
        assert value not in stored_raw
        assert value not in str(failed[1]).encode()
