"""Retention: what the daily purge deletes, what it never touches, and its setting."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_integrations import settings
from spark_integrations.constants import DEFAULT_RETENTION_DAYS, TASK_PURGE_HISTORY
from spark_integrations.errors import ConfigurationError
from spark_integrations.store import (
    DeadLetter,
    OAuthFlow,
    SecretBox,
    SyncDefinition,
    SyncRun,
    WebhookEvent,
    session_scope,
)
from spark_integrations.store.connections import add_connection
from spark_integrations.store.retention import TABLES, purge_history
from spark_integrations.store.types import utcnow
from tests.unit.test_celeryconfig import load_config

NOW = utcnow()
OLD = NOW - timedelta(days=45)
RECENT = NOW - timedelta(days=2)
CUTOFF = NOW - timedelta(days=30)


def sessions_of(url: str) -> Callable[[], AbstractContextManager[Session]]:
    return lambda: session_scope(url)


@pytest.fixture
def ids(store_url: str, fernet_key: str) -> dict[str, str]:
    """One row of each kind, named by what the purge must do with it."""
    made: dict[str, str] = {}
    with session_scope(store_url) as s:
        conn = add_connection(
            s,
            SecretBox([fernet_key]),
            provider="sandbox",
            name="kept",
            config={},
            secrets={},
            status="active",
        )
        sync = SyncDefinition(connection_id=conn.id, stream="items", schedule="every:60")
        quiet = SyncDefinition(connection_id=conn.id, stream="items", schedule="cron:0 0 1 * *")
        s.add_all([sync, quiet])
        s.flush()

        def run(
            name: str, sync_id: str, status: str, created: datetime, done: datetime | None
        ) -> None:
            row = SyncRun(
                sync_id=sync_id,
                status=status,
                created_at=created,
                started_at=created,
                heartbeat_at=created,
                finished_at=done,
            )
            s.add(row)
            s.flush()
            made[name] = row.id

        run("run_old_ok", sync.id, "succeeded", OLD - timedelta(hours=2), OLD - timedelta(hours=1))
        run("run_old_failed", sync.id, "failed", OLD, OLD + timedelta(minutes=1))
        # Started long ago and still held: a run in progress is never purged.
        run("keep_run_running", sync.id, "running", OLD + timedelta(minutes=2), None)
        run("keep_run_queued", sync.id, "queued", OLD + timedelta(minutes=3), None)
        run("keep_run_recent", sync.id, "succeeded", RECENT, RECENT + timedelta(minutes=1))
        # The only (so the newest) run of a monthly sync: kept however old, for `syncs status`.
        run("keep_run_newest_of_its_sync", quiet.id, "succeeded", OLD, OLD + timedelta(minutes=1))

        def add(name: str, row: DeadLetter | WebhookEvent | OAuthFlow) -> None:
            s.add(row)
            s.flush()
            made[name] = row.id

        add("dl_old", DeadLetter(task="integrations.call", error="x", created_at=OLD))
        add(
            "dl_old_replayed",
            DeadLetter(task="integrations.call", error="x", created_at=OLD, replayed_at=RECENT),
        )
        add("keep_dl_recent", DeadLetter(task="integrations.call", error="x", created_at=RECENT))
        for n, (status, at) in enumerate(
            [
                ("processed", OLD),
                ("failed", OLD),
                ("received", OLD),
                ("processing", OLD),
                ("processed", RECENT),
            ]
        ):
            keep = "" if status in ("processed", "failed") and at is OLD else "keep_"
            add(
                f"{keep}event_{status}_{n}",
                WebhookEvent(
                    provider="sandbox",
                    connection_id=conn.id,
                    delivery_id=f"d{n}",
                    payload={},
                    status=status,
                    received_at=at,
                ),
            )

        def flow(name: str, status: str, **kw: datetime | None) -> None:
            values: dict[str, datetime | None] = {"link_expires_at": NOW + timedelta(minutes=5)}
            values.update(kw)
            add(name, OAuthFlow(id=name, connection_id=conn.id, status=status, **values))

        flow("flow_done_old", "succeeded", created_at=OLD, finished_at=OLD)
        flow("flow_failed_old_no_finish", "failed", created_at=OLD, finished_at=None)
        flow("flow_issued_expired", "issued", created_at=OLD, link_expires_at=OLD)
        flow(
            "flow_abandoned",
            "authorizing",
            created_at=OLD,
            link_expires_at=OLD,
            state_expires_at=OLD + timedelta(minutes=10),
        )
        flow("keep_flow_done_recent", "succeeded", created_at=RECENT, finished_at=RECENT)
        flow("keep_flow_issued_pending", "issued", created_at=RECENT)
        # Finished recently though created long ago: its finish time counts.
        flow("keep_flow_finished_late", "failed", created_at=OLD, finished_at=RECENT)
    return made


def remaining(url: str) -> set[str]:
    with session_scope(url) as s:
        found: set[str] = set()
        for model in (SyncRun, DeadLetter, WebhookEvent, OAuthFlow):
            found.update(s.scalars(select(model.id)).all())
        return found


def test_the_purge_deletes_old_history_and_nothing_else(
    store_url: str, ids: dict[str, str]
) -> None:
    counts = purge_history(sessions_of(store_url), CUTOFF, batch=2)
    assert counts == {
        "sync_runs": 2,
        "dead_letters": 2,
        "webhook_events": 2,
        "oauth_flows": 4,
        "outbound_deliveries": 0,
        "outbound_events": 0,
    }
    assert list(counts) == list(TABLES)
    kept = {row_id for name, row_id in ids.items() if name.startswith("keep_")}
    assert remaining(store_url) == kept
    # A second purge finds nothing more.
    assert purge_history(sessions_of(store_url), CUTOFF) == dict.fromkeys(TABLES, 0)


def test_the_newest_run_of_a_sync_goes_once_a_newer_one_exists(
    store_url: str, ids: dict[str, str]
) -> None:
    purge_history(sessions_of(store_url), CUTOFF)
    with session_scope(store_url) as s:
        old = s.get(SyncRun, ids["keep_run_newest_of_its_sync"])
        assert old is not None
        s.add(
            SyncRun(sync_id=old.sync_id, status="succeeded", created_at=RECENT, finished_at=RECENT)
        )
    assert purge_history(sessions_of(store_url), CUTOFF)["sync_runs"] == 1
    assert ids["keep_run_newest_of_its_sync"] not in remaining(store_url)


def test_a_purge_out_of_time_starts_no_batch(store_url: str, ids: dict[str, str]) -> None:
    before = remaining(store_url)
    assert purge_history(
        sessions_of(store_url), CUTOFF, until=time.monotonic() - 1
    ) == dict.fromkeys(TABLES, 0)
    assert remaining(store_url) == before


def test_retention_days_comes_from_the_environment(clean_env: Path) -> None:
    env = dict(os.environ)
    assert settings.load(env).retention_days == DEFAULT_RETENTION_DAYS == 30
    assert settings.load({**env, "SPARK_INTEGRATIONS_RETENTION_DAYS": "7"}).retention_days == 7
    for bad in ("a week", "0", "-3", "1.5"):
        with pytest.raises(ConfigurationError) as caught:
            settings.load({**env, "SPARK_INTEGRATIONS_RETENTION_DAYS": bad})
        message = str(caught.value)
        assert message.startswith("SPARK_INTEGRATIONS_RETENTION_DAYS must be")
        assert message.endswith(".") and "\n" not in message


def test_beat_purges_daily(clean_env: Path) -> None:
    entry = load_config(dict(os.environ))["beat_schedule"]["purge-history"]
    assert entry["task"] == TASK_PURGE_HISTORY
    assert "crontab" in entry["schedule"]


def test_the_purge_deletes_old_finished_deliveries_and_events_no_one_is_owed(
    store_url: str,
) -> None:
    from spark_integrations.store.models_webhooks import (
        OutboundDelivery,
        OutboundEvent,
        Subscriber,
    )

    with session_scope(store_url) as s:
        a = Subscriber(kind="url", url="https://a.example/in", events=["*"])
        b = Subscriber(kind="url", url="https://b.example/in", events=["*"])
        s.add_all([a, b])
        s.flush()
        old_done = OutboundEvent(type="sync.succeeded", data={}, created_at=OLD)
        old_owed = OutboundEvent(type="sync.failed", data={}, created_at=OLD)
        recent = OutboundEvent(type="sync.succeeded", data={}, created_at=RECENT)
        s.add_all([old_done, old_owed, recent])
        s.flush()
        s.add_all(
            [
                OutboundDelivery(
                    subscriber_id=a.id, event_id=old_done.id, status="delivered", created_at=OLD
                ),
                OutboundDelivery(
                    subscriber_id=b.id, event_id=old_done.id, status="failed", created_at=OLD
                ),
                # Still being retried: neither it nor its event goes.
                OutboundDelivery(
                    subscriber_id=a.id, event_id=old_owed.id, status="pending", created_at=OLD
                ),
                OutboundDelivery(
                    subscriber_id=b.id, event_id=old_owed.id, status="delivered", created_at=OLD
                ),
                OutboundDelivery(
                    subscriber_id=a.id, event_id=recent.id, status="delivered", created_at=RECENT
                ),
            ]
        )
        kept_events = {old_owed.id, recent.id}
    counts = purge_history(sessions_of(store_url), CUTOFF, batch=2)
    assert (counts["outbound_deliveries"], counts["outbound_events"]) == (3, 1)
    with session_scope(store_url) as s:
        assert set(s.scalars(select(OutboundEvent.id)).all()) == kept_events
        left = s.execute(select(OutboundDelivery.event_id, OutboundDelivery.status)).all()
        assert sorted(status for _, status in left) == ["delivered", "pending"]
