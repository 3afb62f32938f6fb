"""The points of the fleet that emit its events, each telling the subscribers that want it:
a dead letter written (but a failed delivery's, which tasks.deliveries announces itself), a
sync run ended, a webhook processed, a connection turned needs_reauth."""

from __future__ import annotations

from sqlalchemy import func, select

from spark_integrations.constants import TASK_DELIVER_EVENT, TASK_PROCESS_WEBHOOK
from spark_integrations.store import SecretBox, SyncRun, session_scope
from spark_integrations.store.models_webhooks import OutboundDelivery, OutboundEvent
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.deadletters import write_dead_letter
from spark_integrations.webhooks import outbound
from tests.unit.task_env import task_env_fixture  # noqa: F401 - the task_env fixture
from tests.unit.test_outbound import (  # noqa: F401 - the box and sent fixtures
    box_fixture,
    rows,
    run_task,
    sent_fixture,
    subscribe,
)


def test_a_dead_letter_of_any_task_but_a_delivery_is_announced(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]]
) -> None:
    subscribe(task_env, box, ["dead_letter.written"])
    letter = write_dead_letter(
        task="integrations.call",
        task_id="t1",
        kwargs={"connection_id": "c1", "action": "send", "params": {"token": "Vq7Secret"}},
        error="the provider refused the call.",
        attempts=3,
    )
    write_dead_letter(
        task=TASK_DELIVER_EVENT, task_id="t2", kwargs={"delivery_id": "d"}, error="x.", attempts=8
    )
    [event] = rows(task_env, OutboundEvent)
    assert event.type == "dead_letter.written"
    assert event.data == {
        "dead_letter_id": letter,
        "task": "integrations.call",
        "connection_id": "c1",
        "action": "send",
        "error": "the provider refused the call.",
        "attempts": 3,
    }
    assert len(sent) == 1


def test_a_run_that_ends_is_announced_with_its_ids_and_counts(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], sync_id: str
) -> None:
    subscribe(task_env, box, ["sync.*"])
    now = utcnow()
    run = SyncRun(
        id="r1", sync_id=sync_id, status="failed", full_refresh=False, records=5, pages=2,
        started_at=now, finished_at=now, error="the provider refused page 3.",
    )  # fmt: skip
    outbound.announce_run(run, connection_id="c1", stream="items")
    [event] = rows(task_env, OutboundEvent)
    assert event.type == "sync.failed"
    assert event.data["run_id"] == "r1" and event.data["sync_id"] == sync_id
    assert event.data["error"] == "the provider refused page 3."
    assert (event.data["records"], event.data["pages"], event.data["stream"]) == (5, 2, "items")
    with session_scope(task_env) as session:
        assert session.scalar(select(func.count()).select_from(OutboundDelivery)) == 1


def test_a_processed_webhook_is_announced_once(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], connection_id: str
) -> None:
    from spark_integrations.store import WebhookEvent

    subscribe(task_env, box, ["webhook.received"])
    with session_scope(task_env) as session:
        stored = WebhookEvent(
            provider="sandbox", connection_id=connection_id, delivery_id="dlv-1",
            payload={"token": "Vq7Secret"}, status="received", event_type="item.created",
        )  # fmt: skip
        session.add(stored)
        session.flush()
        event_id = stored.id
    assert run_task(TASK_PROCESS_WEBHOOK, event_id=event_id)["ok"] is True
    assert (
        run_task(TASK_PROCESS_WEBHOOK, event_id=event_id)["ok"] is True
    )  # a repeat answers what was done
    [event] = rows(task_env, OutboundEvent)
    assert event.type == "webhook.received"
    assert event.data == {
        "event_id": event_id, "provider": "sandbox", "connection_id": connection_id,
        "delivery_id": "dlv-1", "event_type": "item.created", "routes": 0, "replay": 0,
    }  # fmt: skip
    assert len(sent) == 1


def test_a_connection_turned_needs_reauth_is_announced(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], connection_id: str
) -> None:
    from spark_integrations.connectors import get_connector
    from spark_integrations.errors import NeedsReauthError
    from spark_integrations.tasks.tokens import StoredTokens

    subscribe(task_env, box, ["connection.*"])
    tokens = StoredTokens(connection_id, get_connector("sandbox"), {}, {})
    error = tokens.give_up("the provider answered invalid_grant.", version=None)
    assert isinstance(error, NeedsReauthError)
    [event] = rows(task_env, OutboundEvent)
    assert event.type == "connection.needs_reauth"
    assert event.data == {
        "connection_id": connection_id,
        "provider": "sandbox",
        "status": "needs_reauth",
        "reason": "the provider answered invalid_grant.",
    }
    assert len(sent) == 1


def test_a_spark_subscribers_failed_run_is_not_told_to_it_nor_reported_if_it_was_a_report(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]]
) -> None:
    """The call of a spark subscriber's run (its key event:EVENT:SUBSCRIBER) dead-lettered: the
    other subscribers hear of it, that one does not; and when the event it carried was itself
    a dead_letter.written, nobody does (two failing subscribers cannot loop)."""
    failing, _ = subscribe(task_env, box, ["dead_letter.written"])
    other, _ = subscribe(task_env, box, ["dead_letter.written"], target="https://b.example/x")
    with session_scope(task_env) as session:
        synced = outbound.record_event(session, "sync.succeeded", {"sync_id": "s"}, only=failing)
        reported = outbound.record_event(session, "dead_letter.written", {}, only=failing)
        cause = {
            d.id: d.event_id
            for d in session.scalars(
                select(OutboundDelivery).where(OutboundDelivery.id.in_(synced + reported))
            )
        }
    sent.clear()

    def letter_of(event_id: str) -> None:
        write_dead_letter(
            task="integrations.call",
            task_id="t",
            kwargs={"idempotency_key": outbound.spark_key(event_id, failing), "params": {}},
            error="spark refused the run.",
            attempts=8,
        )

    letter_of(cause[synced[0]])
    [told] = [e for e in rows(task_env, OutboundEvent) if e.data.get("error")]
    with session_scope(task_env) as session:
        to = session.scalars(
            select(OutboundDelivery.subscriber_id).where(OutboundDelivery.event_id == told.id)
        ).all()
    assert to == [other]
    before = len(rows(task_env, OutboundEvent))
    letter_of(cause[reported[0]])
    assert len(rows(task_env, OutboundEvent)) == before
    assert outbound.spark_key_parts("event:e1:s1") == ("e1", "s1")
    assert outbound.spark_key_parts("sync-abc") is None
    assert outbound.spark_key_parts("event:e1") is None
