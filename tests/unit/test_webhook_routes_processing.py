"""webhooks.processing and webhooks.plan on SQLite and PostgreSQL: who holds an event (each step
one conditional UPDATE), what a held event sets off (routes, else the streams its connector
declares), and the replay that processes it again under keys of its own."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store import SecretBox, SyncDefinition, WebhookEvent, session_scope
from spark_integrations.store.connections import add_connection
from spark_integrations.store.types import utcnow
from spark_integrations.webhooks.plan import idempotency_key, plan_event
from spark_integrations.webhooks.processing import (
    claim_event,
    fail_event,
    release_event,
    reopen_event,
    settle_event,
)
from spark_integrations.webhooks.routes import add_route

STALE = 900.0
PAYLOAD = {"type": "item.updated", "data": {"id": "item-7", "name": "Seven", "tags": ["a", "b"]}}


def new_event(
    url: str, connection_id: str, event_type: str | None = "item.updated", payload: Any = None
) -> str:
    with session_scope(url) as session:
        event = WebhookEvent(
            provider="sandbox",
            connection_id=connection_id,
            delivery_id=f"msg_{utcnow().timestamp()}_{id(payload)}_{event_type}",
            event_type=event_type,
            payload=PAYLOAD if payload is None else payload,
        )
        session.add(event)
        session.flush()
        return event.id


def state(url: str, event_id: str) -> tuple[str, int, dict[str, Any] | None, str | None]:
    with session_scope(url) as session:
        e = session.get(WebhookEvent, event_id)
        assert e is not None
        return e.status, e.attempts, e.result, e.error


def claim(url: str, event_id: str, task_id: str = "t1", retries: int = 0, **kw: Any) -> Any:
    with session_scope(url) as session:
        return claim_event(
            session, event_id, task_id=task_id, retries=retries, stale_after=STALE, **kw
        )


# --- who holds the event ------------------------------------------------------------------------


def test_one_task_takes_a_received_event_and_another_finds_it_busy(
    store_url: str, connection_id: str
) -> None:
    event_id = new_event(store_url, connection_id)
    taken = claim(store_url, event_id)
    assert (taken.kind, taken.attempts, taken.provider, taken.replay) == ("taken", 1, "sandbox", 0)
    status, attempts, result, _ = state(store_url, event_id)
    assert (status, attempts) == ("processing", 1)
    assert result is not None and result["task_id"] == "t1" and result["try"] == 0
    busy = claim(store_url, event_id, "t2")
    assert busy.kind == "busy" and 0 < busy.wait <= STALE
    # The same message delivered again while its first delivery runs: busy too.
    assert claim(store_url, event_id, "t1").kind == "busy"
    # A later try of the same task (its earlier attempt ended in this retry) takes it.
    again = claim(store_url, event_id, "t1", retries=1)
    assert (again.kind, again.attempts) == ("taken", 2)


def test_a_holder_taken_for_dead_after_the_visibility_timeout_loses_its_writes(
    store_url: str, connection_id: str
) -> None:
    event_id = new_event(store_url, connection_id)
    first = claim(store_url, event_id, "t1")
    later = utcnow() + timedelta(seconds=STALE + 1)
    second = claim(store_url, event_id, "t2", now=later)
    assert (second.kind, second.attempts) == ("taken", 2)
    with session_scope(store_url) as session:
        assert not settle_event(session, event_id, first.attempts, {"routes": 9})
        assert settle_event(session, event_id, second.attempts, {"routes": 0})
    status, attempts, result, error = state(store_url, event_id)
    assert (status, attempts, result, error) == ("processed", 2, {"routes": 0}, None)


def test_a_processed_event_answers_its_result_to_every_later_task(
    store_url: str, connection_id: str
) -> None:
    event_id = new_event(store_url, connection_id)
    taken = claim(store_url, event_id)
    with session_scope(store_url) as session:
        assert settle_event(session, event_id, taken.attempts, {"routes": 1, "runs": []})
    for task_id in ("t1", "t2"):
        done = claim(store_url, event_id, task_id)
        assert (done.kind, done.result) == ("done", {"routes": 1, "runs": []})
    assert state(store_url, event_id)[1] == 1  # nothing taken again


def test_a_release_counts_the_failure_and_the_next_take_keeps_the_count(
    store_url: str, connection_id: str
) -> None:
    event_id = new_event(store_url, connection_id)
    taken = claim(store_url, event_id)
    held = {"replay": 0, "failures": 1, "task_id": "t1", "try": 0}
    with session_scope(store_url) as session:
        assert release_event(session, event_id, taken.attempts, error="broker gone", held=held)
    status, _, _, error = state(store_url, event_id)
    assert (status, error) == ("received", "broker gone")
    with session_scope(store_url) as session:
        enqueued = session.get(WebhookEvent, event_id)
        assert enqueued is not None and enqueued.enqueued_at is not None  # the sweep waits
    retry = claim(store_url, event_id, "t1", retries=1)
    assert (retry.kind, retry.failures, retry.attempts) == ("taken", 1, 2)


def test_a_failed_event_fails_its_task_again_and_a_replay_task_takes_it(
    store_url: str, connection_id: str
) -> None:
    event_id = new_event(store_url, connection_id)
    taken = claim(store_url, event_id)
    held = {"replay": 0, "failures": 8, "task_id": "t1", "try": 7}
    with session_scope(store_url) as session:
        assert fail_event(session, event_id, taken.attempts, error="gave up.", held=held)
    again = claim(store_url, event_id, "t1", retries=8)
    assert (again.kind, again.error) == ("failed", "gave up.")
    replayed = claim(store_url, event_id, "dlq-replay")
    assert (replayed.kind, replayed.failures, replayed.replay) == ("taken", 0, 0)


def test_a_missing_event_is_missing(store_url: str, connection_id: str) -> None:
    assert claim(store_url, "no-such-event").kind == "missing"


def test_a_take_racing_another_finds_it_busy(store_url: str, connection_id: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite locks the whole file: a take cannot interleave with another")
    event_id = new_event(store_url, connection_id)
    with session_scope(store_url) as session:
        assert session.get(WebhookEvent, event_id) is not None  # read as received ...
        with session_scope(store_url) as other:  # ... while another task takes it
            taken = claim_event(other, event_id, task_id="t2", retries=0, stale_after=STALE)
            assert taken.kind == "taken"
        # This session's copy is stale: the conditional UPDATE matches nothing.
        raced = claim_event(session, event_id, task_id="t1", retries=0, stale_after=STALE)
        assert raced.kind == "busy"
    assert state(store_url, event_id)[:2] == ("processing", 1)


def test_reopen_counts_a_replay_and_refuses_an_event_being_processed(
    store_url: str, connection_id: str
) -> None:
    event_id = new_event(store_url, connection_id)
    claim(store_url, event_id)
    with session_scope(store_url) as session, pytest.raises(UsageError, match="being processed"):
        reopen_event(session, event_id, stale_after=STALE)
    with session_scope(store_url) as session:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(status="processed", result={"routes": 0}, processed_at=utcnow())
        )
    for expected in (1, 2):
        with session_scope(store_url) as session:
            event = reopen_event(session, event_id, stale_after=STALE)
            assert (event.status, event.result, event.error) == (
                "received",
                {"replay": expected},
                None,
            )
            assert event.processed_at is None and event.enqueued_at is not None
        taken = claim(store_url, event_id, f"replay-{expected}")
        assert (taken.kind, taken.replay) == ("taken", expected)
        with session_scope(store_url) as session:
            settle_event(session, event_id, taken.attempts, {"routes": 0, "replay": expected})
    with session_scope(store_url) as session, pytest.raises(NotFoundError):
        reopen_event(session, "nope", stale_after=STALE)


def test_route_keys_are_one_per_event_route_and_replay() -> None:
    assert idempotency_key("e", "r") == "webhook:e:r"
    assert idempotency_key("e", "r", 0) == "webhook:e:r"
    assert idempotency_key("e", "r", 2) == "webhook:e:r:replay-2"


# --- what a held event sets off ---------------------------------------------------------------


@pytest.fixture
def spark_id(store_url: str, fernet_key: str) -> str:
    with session_scope(store_url) as session:
        return add_connection(
            session, SecretBox([fernet_key]), provider="spark", name="spark",
            config={"base_url": "http://127.0.0.1:9"}, secrets={"api_key": "k"}, status="active",
        ).id  # fmt: skip


def route(url: str, connection_id: str, pattern: str, kind: str, **kw: Any) -> str:
    with session_scope(url) as session:
        return add_route(
            session, connection_id=connection_id, event_type=pattern, kind=kind, **kw
        ).id


def plan(url: str, event_id: str, replay: int = 0) -> Any:
    with session_scope(url) as session:
        event = session.get(WebhookEvent, event_id)
        assert event is not None
        return plan_event(session, event, replay)


def test_an_event_with_nothing_to_do_plans_nothing(store_url: str, connection_id: str) -> None:
    event_id = new_event(store_url, connection_id, event_type="message.created")
    done = plan(store_url, event_id)
    assert done.sends == [] and done.result([]) == {"routes": 0}


def test_matching_routes_send_a_sync_an_action_and_a_spark_run(
    store_url: str, connection_id: str, sync_id: str, spark_id: str
) -> None:
    sync_route = route(store_url, connection_id, "item", "sync", sync_id=sync_id)
    action_route = route(
        store_url, connection_id, "item.updated", "action",
        target_connection_id=connection_id, name="create_message",
        templates={"text": "{data.name} ({data.id}) {data.tags}"},
    )  # fmt: skip
    spark_route = route(
        store_url, connection_id, "*", "spark", target_connection_id=spark_id, name="wf-1"
    )
    route(store_url, connection_id, "message", "sync", sync_id=sync_id)  # matches nothing
    event_id = new_event(store_url, connection_id)
    done = plan(store_url, event_id)
    assert done.routes == 3 and done.skipped == []
    sync_send, action_send, spark_send = done.sends
    assert (sync_send.task, sync_send.queue, sync_send.kwargs) == (
        "integrations.sync",
        "integrations.syncs",
        {"sync_id": sync_id},
    )
    assert sync_send.entry == {"route_id": sync_route, "kind": "sync", "sync_id": sync_id}
    assert (action_send.task, action_send.queue) == ("integrations.call", "integrations.calls")
    assert action_send.kwargs == {
        "connection_id": connection_id,
        "action": "create_message",
        "params": {"text": 'Seven (item-7) ["a","b"]'},
        "idempotency_key": f"webhook:{event_id}:{action_route}",
    }
    # No input template: the payload as compact JSON with sorted keys.
    assert spark_send.kwargs["action"] == "run_workflow"
    assert spark_send.kwargs["params"] == {
        "workflow_id": "wf-1",
        "input": json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":")),
    }
    assert spark_send.entry["workflow_id"] == "wf-1"
    assert spark_send.kwargs["idempotency_key"] == f"webhook:{event_id}:{spark_route}"
    # A replay's keys are its own.
    replayed = plan(store_url, event_id, replay=1)
    assert (
        replayed.sends[1].kwargs["idempotency_key"] == f"webhook:{event_id}:{action_route}:replay-1"
    )
    assert replayed.result([{"x": 1}], 1) == {"routes": 3, "runs": [{"x": 1}], "replay": 1}


def test_routes_that_cannot_run_are_skipped_with_the_reason(
    store_url: str, connection_id: str, sync_id: str, spark_id: str
) -> None:
    route(store_url, connection_id, "*", "sync", sync_id=sync_id)
    route(
        store_url, connection_id, "*", "spark", target_connection_id=spark_id, name="wf-1",
        templates={"input": "{data.missing}"},
    )  # fmt: skip
    with session_scope(store_url) as session:
        sync = session.get(SyncDefinition, sync_id)
        assert sync is not None
        sync.enabled = False
    done = plan(store_url, plan_event_id := new_event(store_url, connection_id))
    assert plan_event_id and done.sends == [] and done.routes == 2
    assert [s["reason"] for s in done.skipped] == [
        f"sync {sync_id} is paused.",
        "the record has no field 'data.missing' for the template.",
    ]
    assert done.result([])["skipped"] == done.skipped


def test_without_a_route_the_declared_streams_enabled_syncs_run(
    store_url: str, connection_id: str, sync_id: str
) -> None:
    with session_scope(store_url) as session:
        newest = SyncDefinition(connection_id=connection_id, stream="items_newest")
        paused = SyncDefinition(connection_id=connection_id, stream="items", enabled=False)
        session.add_all([newest, paused])
        session.flush()
        newest_id = newest.id
    done = plan(store_url, new_event(store_url, connection_id, "item.created"))
    assert done.routes == 0
    assert [s.kwargs for s in done.sends] == [{"sync_id": sync_id}, {"sync_id": newest_id}]
    assert done.sends[0].entry == {"kind": "sync", "stream": "items", "sync_id": sync_id}
    assert done.refreshed == ["items", "items_newest", "items_by_tag"]
    # A route of the event's type takes over from the declaration.
    route(store_url, connection_id, "item.created", "sync", sync_id=newest_id)
    routed = plan(store_url, new_event(store_url, connection_id, "item.created"))
    assert [s.kwargs for s in routed.sends] == [{"sync_id": newest_id}] and routed.refreshed == []
    # An event the connector declares nothing for does nothing.
    assert plan(store_url, new_event(store_url, connection_id, "other")).sends == []


def test_declared_params_pick_the_syncs_of_the_events_repository(
    store_url: str, fernet_key: str
) -> None:
    with session_scope(store_url) as session:
        gh = add_connection(
            session, SecretBox([fernet_key]), provider="github", name="gh", config={},
            secrets={"token": "t"}, status="active",
        )  # fmt: skip
        syncs = {
            (owner, repo, stream): SyncDefinition(
                connection_id=gh.id, stream=stream, params={"owner": owner, "repo": repo}
            )
            for owner, repo in (("acme", "app"), ("acme", "web"))
            for stream in ("issues", "pull_requests")
        }
        session.add_all(syncs.values())
        session.flush()
        ids = {k: s.id for k, s in syncs.items()}
        gh_id = gh.id
    payload = {"action": "opened", "repository": {"name": "web", "owner": {"login": "acme"}}}
    opened = plan(store_url, new_event(store_url, gh_id, "pull_request.opened", payload))
    assert [s.kwargs["sync_id"] for s in opened.sends] == [
        ids[("acme", "web", "pull_requests")],
        ids[("acme", "web", "issues")],
    ]
    # A payload without the repository narrows nothing: every sync of the streams runs.
    bare = plan(store_url, new_event(store_url, gh_id, "issues.opened", {"action": "opened"}))
    assert sorted(s.kwargs["sync_id"] for s in bare.sends) == sorted(
        v for k, v in ids.items() if k[2] == "issues"
    )
