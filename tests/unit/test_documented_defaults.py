"""Every default the README states, pinned by its value (not by the constant that defines it).

A constant changed by mistake changes the fleet's behaviour and makes the README untrue; a test
comparing the setting with the same constant would still pass. Each value here is the number
the README prints, next to where it prints it. (The retry and breaker defaults of a connector
are pinned in test_connector_base.py, the idempotency records' 24 hours in
coordination/test_idempotency.py, the breaker's doubling and cap in coordination/test_breaker.py,
the connect link's and state's 10 minutes in gateway/test_connect_flow.py.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from spark_integrations import settings
from spark_integrations.connectors.oauth import renew_margin
from tests.unit.test_celeryconfig import load_config


@pytest.fixture
def defaults(tmp_path: Path) -> settings.Settings:
    """Settings of an environment that sets nothing but the embedded HOME."""
    return settings.load({"SPARK_INTEGRATIONS_HOME": str(tmp_path / "home")})


def test_configuration_table_defaults(defaults: settings.Settings) -> None:
    """README, Configuration: the defaults column."""
    assert defaults.public_url == "http://127.0.0.1:8130"
    assert defaults.visibility_timeout == 900
    assert defaults.task_time_limit == 300
    assert defaults.max_deliveries == 3
    assert defaults.sync_lease == 60
    assert defaults.retention_days == 30
    assert defaults.spark_wait == 4.0
    assert defaults.operations.webhook_tolerance == 300
    assert defaults.operations.webhook_max_bytes == 5 * 1024 * 1024 == 5242880
    assert defaults.operations.log_format == "text"
    assert defaults.operations.console_token is None
    assert defaults.broker_fetch == "reliable"
    assert defaults.reclaim_after == 60


def test_home_defaults_to_the_xdg_data_folder(tmp_path: Path) -> None:
    """README, Embedded mode: HOME defaults to $XDG_DATA_HOME/spark-integrations, else
    ~/.local/share/spark-integrations."""
    xdg = tmp_path / "xdg"
    assert settings.load({"XDG_DATA_HOME": str(xdg)}).home == xdg / "spark-integrations"
    user = tmp_path / "user"
    assert settings.load({"HOME": str(user)}).home == user / ".local/share/spark-integrations"


@pytest.fixture
def embedded_celery(clean_env: Path) -> dict[str, Any]:
    return load_config(dict(os.environ))


def test_not_losing_work_figures(embedded_celery: dict[str, Any]) -> None:
    """README, Not losing work: visibility timeout 15 minutes (broker and results), hard task
    time limit 5 minutes, the unacked scan every 10 s, prefetch 1."""
    c = embedded_celery
    assert c["broker_transport_options"]["visibility_timeout"] == 900
    assert c["result_backend_transport_options"]["visibility_timeout"] == 900
    assert c["broker_transport_options"]["unacked_restore_interval"] == 10
    assert c["task_time_limit"] == 300
    assert c["worker_prefetch_multiplier"] == 1


def test_reliable_fetch_figures(embedded_celery: dict[str, Any]) -> None:
    """README, Not losing work: reliable fetch on the embedded Redis, a dead worker's messages
    back after 60 s, a take every 0.1 s without
    keyspace notifications (every 1 s with them, a safety net)."""
    from spark_integrations.broker import reliable

    assert embedded_celery["broker_url"].startswith("sparkredis+socket://")
    assert embedded_celery["broker_transport_options"]["reclaim_after"] == 60
    assert reliable.POLL_WITHOUT_WAKE == 0.1
    assert reliable.POLL_WITH_WAKE == 1.0


def test_beat_schedule_figures(embedded_celery: dict[str, Any]) -> None:
    """README: parked calls released every 5 s, tokens renewed by the job every 30 s, history
    purged daily at 03:17 UTC."""
    c = embedded_celery
    schedule = {entry["task"]: entry["schedule"] for entry in c["beat_schedule"].values()}
    assert schedule["integrations.release_parked"] == 5.0
    assert schedule["integrations.refresh_tokens"] == 30.0
    assert "<crontab: 17 3 * * *" in schedule["integrations.purge_history"]
    # Webhooks in and out: stored events no task took every 30 s, deliveries due every 5 s.
    assert schedule["integrations.sweep_webhooks"] == 30.0
    assert schedule["integrations.sweep_deliveries"] == 5.0
    assert c["timezone"] == "UTC" and c["enable_utc"] is True


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [(1.0, 0.1), (20.0, 2.0), (600.0, 60.0), (3600.0, 60.0)],
)
def test_tokens_are_renewed_ahead_by_at_most_ten_percent_and_sixty_seconds(
    lifetime: float, margin: float
) -> None:
    """README, Refresh without races: ahead of expiry by at most 10% of the lifetime and 60 s."""
    assert renew_margin(lifetime) == pytest.approx(margin)


def test_beat_reads_the_store_every_second() -> None:
    """README, Schedules: read by beat from the store every second."""
    from spark_integrations.workers.scheduler import SYNC_TICK

    assert SYNC_TICK == 1.0


def test_the_budget_plans_at_most_thirty_seconds_ahead() -> None:
    """README, Known limits: the rate budget plans slots at most 30 s ahead."""
    from spark_integrations.constants import RATE_BUDGET_HORIZON

    assert RATE_BUDGET_HORIZON == 30.0


def test_event_deliveries_are_retried_over_about_twenty_eight_hours() -> None:
    """README, Webhooks in and out: at once, after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h."""
    from spark_integrations.webhooks.delivery import RETRY_SCHEDULE

    assert RETRY_SCHEDULE == (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
    assert 27 * 3600 < sum(RETRY_SCHEDULE) < 29 * 3600
