"""Destination params (``--with NAME=TEMPLATE``): which names each kind takes, templates checked
when the destination is built, an action's params rendered from each record, and what an
action destination's page sends (one call per new or changed record, the same idempotency key
for the same version).

The calls are sent through a stand-in for ``send_task`` (sending needs a broker; the real
workers run them in tests/integration)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import current_app

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.actions import Action
from spark_integrations.constants import QUEUE_CALLS, TASK_CALL
from spark_integrations.destinations import Batch, destination_for
from spark_integrations.destinations.builtin import (
    ActionDestination,
    check_templates_fit,
    params_for_record,
)
from spark_integrations.errors import SkippableError, UsageError
from spark_integrations.store import session_scope

UNKEYED = get_connector("sandbox").get_action("create_message_unkeyed")
ITEMS = get_connector("sandbox").get_stream("items")


def item(n: int, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"item-{n}",
        "name": f"thing {n}",
        "value": n,
        "version": version,
        "updated_at": f"2024-01-01T00:00:{n:02d}.{version:06d}Z",
        **extra,
    }


# --- names and templates, when the destination is built -----------------------------------------


def test_store_takes_no_params() -> None:
    assert destination_for("store", {}).params == {}
    with pytest.raises(UsageError, match=r"store destination takes no --with params; --with x"):
        destination_for("store", {"x": "{id}"})


def test_action_takes_any_name_until_checked_and_templates_are_checked_at_once() -> None:
    dest = destination_for("action:c1:create_message", {"text": "{name}", "other": "x"})
    assert dest.params == {"text": "{name}", "other": "x"}
    with pytest.raises(UsageError) as caught:
        destination_for("action:c1:create_message", {"text": "{name"})
    assert str(caught.value).startswith("--with text: the template '{name' is malformed")


def test_spark_takes_only_input() -> None:
    dest = destination_for("spark:c1:wf-1", {"input": "{name}: {id}"})
    assert dest.params == {"input": "{name}: {id}"}
    assert dest.spec == "spark:c1:wf-1"
    with pytest.raises(UsageError, match=r"spark destination takes only input; --with text"):
        destination_for("spark:c1:wf-1", {"text": "{id}"})


@pytest.mark.parametrize("params", [["input"], {"input": 3}, {3: "x"}, "input={id}"])
def test_params_must_be_names_to_templates(params: Any) -> None:
    with pytest.raises(UsageError, match="NAME -> template"):
        destination_for("spark:c1:wf-1", params)


def test_check_templates_fit_the_action() -> None:
    counted = Action("count", "POST", "/v1/count", params={"n": int}, optional={"note": str})
    check_templates_fit(counted, {"note": "{id}"})
    with pytest.raises(UsageError, match=r"--with x: count takes no param 'x'; it takes n, note"):
        check_templates_fit(counted, {"x": "{id}"})
    with pytest.raises(UsageError, match=r"--with n: the param 'n' of count is not text"):
        check_templates_fit(counted, {"n": "{id}"})


def test_an_action_destination_checks_names_against_its_action(
    store_url: str, connection_id: str
) -> None:
    with session_scope(store_url) as session:
        destination_for(f"action:{connection_id}:create_message", {"text": "{name}"}).check(session)
        dest = destination_for(f"action:{connection_id}:create_message", {"channel": "{name}"})
        with pytest.raises(UsageError, match="create_message takes no param 'channel'"):
            dest.check(session)


# --- params rendered from a record ----------------------------------------------------------------


def test_a_template_overrides_what_the_record_gives() -> None:
    record = item(1, text="from the record")
    assert params_for_record(UNKEYED, record) == {"text": "from the record"}
    assert params_for_record(UNKEYED, record, {"text": "{name} #{value}"}) == {"text": "thing 1 #1"}
    # Without a text field, the record as compact JSON text, as before.
    plain = params_for_record(UNKEYED, item(2))
    assert plain["text"].startswith('{"id":"item-2","name":"thing 2"')


def test_a_record_missing_a_templated_field_is_skippable() -> None:
    with pytest.raises(SkippableError, match="no field 'title'"):
        params_for_record(UNKEYED, item(1), {"text": "{title}"})


# --- a page delivered -------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def send_task(name: str, kwargs: dict[str, Any], queue: str) -> None:
        assert (name, queue) == (TASK_CALL, QUEUE_CALLS)
        calls.append(kwargs)

    monkeypatch.setattr(current_app, "send_task", send_task)
    yield calls


def deliver(url: str, dest: Any, sync_id: str, records: list[dict[str, Any]]) -> Any:
    with session_scope(url) as session:
        return dest.deliver(session, Batch(sync_id, "run-1", ITEMS, records))


def test_each_new_or_changed_record_is_one_call_with_its_rendered_params(
    store_url: str, connection_id: str, sync_id: str, sent: list[dict[str, Any]]
) -> None:
    dest = destination_for(
        f"action:{connection_id}:create_message_unkeyed", {"text": "{name}: {id} v{version}"}
    )
    assert isinstance(dest, ActionDestination)
    done = deliver(store_url, dest, sync_id, [item(1), item(2), {**item(3), "name": None}])
    assert (done.written, done.sent) == (3, 3)
    assert [c["params"]["text"] for c in sent] == [
        "thing 1: item-1 v1",
        "thing 2: item-2 v1",
        "null: item-3 v1",
    ]
    assert {c["connection_id"] for c in sent} == {connection_id}
    keys = [c["idempotency_key"] for c in sent]
    assert len(set(keys)) == 3 and all(k.startswith("sync-") for k in keys)

    # The same page again: nothing new, nothing sent. One record changed: one call, a new key.
    sent.clear()
    assert deliver(store_url, dest, sync_id, [item(1), item(2)]).sent == 0
    assert sent == []
    assert deliver(store_url, dest, sync_id, [item(1), item(2, version=2)]).sent == 1
    assert [c["params"]["text"] for c in sent] == ["thing 2: item-2 v2"]
    assert sent[0]["idempotency_key"] not in keys


def test_a_record_a_template_cannot_fill_is_skipped_and_the_page_goes_on(
    store_url: str,
    connection_id: str,
    sync_id: str,
    sent: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    dest = destination_for(
        f"action:{connection_id}:create_message_unkeyed", {"text": "{extra.note}"}
    )
    records = [item(1, extra={"note": "one"}), item(2), item(3, extra={"note": "three"})]
    done = deliver(store_url, dest, sync_id, records)
    assert (done.written, done.sent) == (3, 2)
    assert [c["params"]["text"] for c in sent] == ["one", "three"]
    assert 'record "item-2" not sent' in caplog.text and "no field 'extra.note'" in caplog.text
