"""Promises of ``integrations.sync`` about failures and stale reads, kept by real workers.

A run that fails records its error in the run's history and as a dead letter, whatever made it
fail: a page the provider refuses for good, the retry policy spent, the connection needing
re-authorisation, a destination refusing a page. And a record is never replaced by an older
version of itself, even when a backfill reads stale data after an incremental run stored a
newer one (the sandbox's read replica serves the stale data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from celery import Celery
from sqlalchemy import select

from spark_integrations.constants import TASK_SYNC
from spark_integrations.store import DeadLetter, SyncRun, session_scope
from tests.integration.fleet import (
    SandboxProcess,
    add_connection,
    client_app,
    outcome,
    run_cli,
    start_sandbox,
    start_workers,
)
from tests.integration.oauth_helpers import (
    CLIENT,
    CLIENT_SECRET,
    connect_directly,
    connection_row,
    expire_in_store,
    stored_token,
)
from tests.integration.test_syncs import (
    KEY,
    cursor_of,
    database,
    new_sync,
    run_to_end,
    served,
    stored,
    trigger,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]


@pytest.fixture
def env(redis_env: dict[str, str]) -> dict[str, str]:
    return {**redis_env, "SPARK_INTEGRATIONS_SYNC_LEASE": "4"}


def runs_of(env: dict[str, str], sync_id: str) -> list[SyncRun]:
    with session_scope(database(env)) as session:
        return list(session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)))


def sync_letters(env: dict[str, str], sync_id: str) -> list[DeadLetter]:
    with session_scope(database(env)) as session:
        letters = session.scalars(select(DeadLetter).where(DeadLetter.task == TASK_SYNC)).all()
        return [d for d in letters if d.kwargs.get("sync_id") == sync_id]


NEEDS_REAUTH = ("needs_reauth", "re-authorisation")


def says(text: str, expected: str | tuple[str, ...]) -> bool:
    """``text`` says ``expected`` (one of them, when several wordings mean the same)."""
    return any(e in text for e in ((expected,) if isinstance(expected, str) else expected))


def fails_and_is_recorded(
    app: Celery, env: dict[str, str], sync_id: str, *expected: str | tuple[str, ...]
) -> SyncRun:
    """Trigger the sync: the task fails, saying each of ``expected``; the run is recorded as
    failed with that error, and one dead letter of ``integrations.sync`` says it too."""
    ok, error = outcome(trigger(app, sync_id), timeout=180)
    assert not ok, "the run must fail"
    runs = runs_of(env, sync_id)
    assert len(runs) == 1, (error, runs)
    [run] = runs
    assert run.status == "failed" and run.finished_at is not None
    assert run.error is not None
    [letter] = sync_letters(env, sync_id)
    assert letter.task_id == run.task_id
    for text in expected:
        assert says(error, text), (text, error)
        assert says(run.error, text), (text, run.error)
        assert says(letter.error, text), (text, letter.error)
    listed = run_cli(env, "syncs", "status", sync_id, "--json")
    assert listed.returncode == 0, listed.stderr
    assert "failed" in listed.stdout
    return run


def test_a_page_refused_for_good_fails_the_run(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """The provider answers 404 to the stream (a wrong base URL): no retry, the run fails."""
    box = start_sandbox(env, short_tmp, processes, f"--api-key={KEY}")
    cid = add_connection(env, "gone", {"base_url": box.url + "/gone"}, f"api_key={KEY}")
    sync_id = new_sync(env, cid)
    start_workers(env, short_tmp, processes)
    run = fails_and_is_recorded(client_app(env), env, sync_id, "404")
    assert run.pages == 0 and run.retries == 0


def test_a_page_failing_past_the_retry_policy_fails_the_run(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Every page request meets a 500: after the connection's retry_attempts the run fails."""
    box = start_sandbox(
        env, short_tmp, processes, f"--api-key={KEY}", "--fault-rate=1", "--fault-kinds=500"
    )
    config = {"base_url": box.url, "retry_attempts": 3, "breaker_fail_max": 1000}
    cid = add_connection(env, "failing", config, f"api_key={KEY}")
    sync_id = new_sync(env, cid)
    start_workers(env, short_tmp, processes)
    run = fails_and_is_recorded(client_app(env), env, sync_id, "3 attempts", "500")
    assert box.stats()["faults_injected"] == 3
    assert run.pages == 0


def test_a_connection_needing_reauthorisation_fails_the_run(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Mid-run, the token's refresh meets invalid_grant (its refresh token was used
    elsewhere): the connection turns needs_reauth and the run fails; the next run fails at
    once, before any request."""
    box = start_sandbox(env, short_tmp, processes, "--rate-limit=1000")
    cid = add_connection(env, "reauth", {"base_url": box.url, **CLIENT}, CLIENT_SECRET)
    connect_directly(env, cid, box.url)
    token = stored_token(env, cid)
    assert token is not None and token.refresh_token
    stolen = requests.post(
        f"{box.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token.refresh_token},
        auth=("sandbox", "sandbox-secret"),
        timeout=10,
    )
    assert stolen.status_code == 200
    expire_in_store(env, cid)  # the run must refresh before its first page
    sync_id = new_sync(env, cid)
    start_workers(env, short_tmp, processes)
    app = client_app(env)
    fails_and_is_recorded(app, env, sync_id, "invalid_grant")
    assert connection_row(env, cid)[0] == "needs_reauth"
    assert box.stats()["requests"] == 0  # no page asked with a dead token

    with session_scope(database(env)) as session:  # forget the first run's letter and history
        for row in session.scalars(select(DeadLetter)).all():
            session.delete(row)
        for row in session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)).all():
            session.delete(row)
    fails_and_is_recorded(app, env, sync_id, NEEDS_REAUTH)
    assert box.stats()["invalid_grants"] == 1 and box.stats()["requests"] == 0


def test_a_destination_refusing_a_page_fails_the_run(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """An action destination whose connection was removed refuses the first page."""
    box = start_sandbox(env, short_tmp, processes, f"--api-key={KEY}", "--records=50")
    source = add_connection(env, "src", {"base_url": box.url}, f"api_key={KEY}")
    target = add_connection(env, "dst", {"base_url": box.url}, f"api_key={KEY}")
    sync_id = new_sync(env, source, destination=f"action:{target}:create_message")
    removed = run_cli(env, "connections", "remove", target)
    assert removed.returncode == 0, removed.stderr
    start_workers(env, short_tmp, processes)
    run = fails_and_is_recorded(client_app(env), env, sync_id, "destination refused a page", target)
    assert run.pages == 0 and stored(env, sync_id) == {}
    assert cursor_of(env, sync_id) is None
    assert box.stats()["messages_created"] == 0


def versions(records: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {key: int(record["version"]) for key, record in records.items()}


def test_a_backfill_reading_stale_data_never_replaces_a_newer_record(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """An incremental run stores new versions of 40 records; then a backfill reads the stream
    from a replica that lags behind (the versions before the change): the record store keeps
    every newer version, the backfill writes nothing, and the cursor does not move back."""
    box: SandboxProcess = start_sandbox(
        env, short_tmp, processes, f"--api-key={KEY}", "--records=300"
    )
    cid = add_connection(env, "replica", {"base_url": box.url}, f"api_key={KEY}")
    sync_id = new_sync(env, cid)
    start_workers(env, short_tmp, processes)
    app = client_app(env)
    assert run_to_end(app, sync_id)["records"] == 300
    box.control("replica", snapshot=True)
    box.control("update", count=40)
    assert run_to_end(app, sync_id)["records"] >= 1
    latest = served(box.url)
    assert versions(stored(env, sync_id)) == versions(latest)
    end = cursor_of(env, sync_id)

    box.control("replica", reads="replica")
    stale = served(box.url)
    older = {k for k in latest if stale[k]["version"] < latest[k]["version"]}
    assert older, "the replica must serve older versions of the changed records"
    backfill = trigger(app, sync_id, full_refresh=True).get(timeout=180)
    assert backfill["full_refresh"] is True and backfill["pages"] == 3
    assert backfill["records"] == 0, "the backfill replaced records with older versions"
    assert versions(stored(env, sync_id)) == versions(latest)
    assert cursor_of(env, sync_id) == end
