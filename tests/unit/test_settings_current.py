"""The settings a process reads once (settings_current): task code and the events it emits
share them, so an event costs no new read of the variables, home folder or secret key file,
and a configuration that fails to read is not kept."""

from __future__ import annotations

from typing import Any

import pytest

import spark_integrations.settings as settings_module
from spark_integrations.settings_current import current_settings
from spark_integrations.store import SecretBox
from spark_integrations.store.models_webhooks import OutboundEvent
from spark_integrations.tasks import context
from spark_integrations.webhooks import outbound
from tests.unit.task_env import task_env_fixture  # noqa: F401 - the task_env fixture
from tests.unit.test_outbound import (  # noqa: F401 - the box and sent fixtures
    box_fixture,
    rows,
    sent_fixture,
    subscribe,
)


@pytest.fixture(name="loads")
def loads_fixture(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry per read of the settings from here on."""
    seen: list[None] = []
    load = settings_module.load

    def counting(*args: Any, **kwargs: Any) -> settings_module.Settings:
        seen.append(None)
        return load(*args, **kwargs)

    monkeypatch.setattr(settings_module, "load", counting)
    return seen


def test_events_read_the_settings_once_and_share_them_with_task_code(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], loads: list[None]
) -> None:
    assert context.current_settings is current_settings  # one cache, cleared in one place
    subscribe(task_env, box, ["sync.*"])
    for n in range(3):
        outbound.emit("sync.succeeded", {"sync_id": f"s{n}"})
    assert context.current_settings().database_url == task_env
    assert len(loads) == 1
    assert len(rows(task_env, OutboundEvent)) == 3 and len(sent) == 3


def test_a_configuration_that_fails_to_read_is_not_kept(
    task_env: str,
    box: SecretBox,
    sent: list[tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    subscribe(task_env, box, ["sync.*"])
    monkeypatch.setenv("SPARK_INTEGRATIONS_VISIBILITY_TIMEOUT", "soon")
    outbound.emit("sync.succeeded", {"sync_id": "s1"})  # logged, never raised
    assert "was not stored for its subscribers" in caplog.text
    assert rows(task_env, OutboundEvent) == [] and sent == []
    monkeypatch.delenv("SPARK_INTEGRATIONS_VISIBILITY_TIMEOUT")
    outbound.emit("sync.succeeded", {"sync_id": "s2"})
    [event] = rows(task_env, OutboundEvent)
    assert event.data == {"sync_id": "s2"} and len(sent) == 1
