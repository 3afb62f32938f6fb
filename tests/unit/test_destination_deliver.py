"""A destination's delivery mode (``syncs add --deliver changes|new``): which kinds offer it, and
what an action or spark destination sends in ``new`` mode (only records the sync never
delivered before, by primary key; a changed record is stored, not sent), with the same
idempotency key as in ``changes`` mode.

The calls are sent through a stand-in for ``send_task`` (sending needs a broker; the real
workers and the real spark run them in tests/integration/test_flow_github_spark.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import current_app

from spark_integrations.destinations import Batch, destination_for
from spark_integrations.destinations.builtin import ActionDestination
from spark_integrations.destinations.spark import RUN_WORKFLOW, SparkDestination
from spark_integrations.errors import UsageError
from spark_integrations.store import session_scope
from spark_integrations.store.records import content_hash, record_key, stored_records
from tests.unit.test_destination_params import ITEMS, deliver, item
from tests.unit.test_destination_spark import RUN

# --- the mode, when the destination is built ----------------------------------------------------


def test_changes_is_the_default_and_every_kind_takes_it() -> None:
    for spec in ("store", "action:c1:create_message", "spark:c1:wf-1"):
        assert destination_for(spec).deliver_mode == "changes"
        assert destination_for(spec, None, "changes").deliver_mode == "changes"


def test_new_is_for_destinations_that_send() -> None:
    assert destination_for("action:c1:create_message", None, "new").deliver_mode == "new"
    assert destination_for("spark:c1:wf-1", {"input": "{id}"}, "new").deliver_mode == "new"
    assert destination_for("spark:c1:wf-1").chooses_delivery()
    assert not destination_for("store").chooses_delivery()
    with pytest.raises(
        UsageError,
        match=r"^--deliver new does not apply to the store destination; it is for destinations "
        r"that send \(action, spark\)\.$",
    ):
        destination_for("store", None, "new")


@pytest.mark.parametrize("mode", ["", "New", "all", "changes ", "x" * 500])
def test_any_other_mode_is_refused_in_one_sentence(mode: str) -> None:
    for spec in ("store", "action:c1:create_message", "spark:c1:wf-1"):
        with pytest.raises(UsageError, match=r"^--deliver takes changes or new, not '") as caught:
            destination_for(spec, None, mode)
        assert len(str(caught.value)) < 120


# --- a page delivered in new mode ---------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, kwargs, queue: calls.append(kwargs))
    yield calls


def test_an_action_destination_sends_new_records_only(
    store_url: str,
    connection_id: str,
    sync_id: str,
    sent: list[dict[str, Any]],
) -> None:
    spec = f"action:{connection_id}:create_message_unkeyed"
    dest = destination_for(spec, {"text": "{name} v{version}"}, "new")
    assert isinstance(dest, ActionDestination)
    done = deliver(store_url, dest, sync_id, [item(1), item(2)])
    assert (done.written, done.sent) == (2, 2)
    first_keys = [c["idempotency_key"] for c in sent]

    # item 2 changed and item 3 is new: both stored, only item 3 sent.
    done = deliver(store_url, dest, sync_id, [item(1), item(2, version=2), item(3)])
    assert (done.written, done.unchanged, done.sent) == (2, 1, 1)
    assert [c["params"]["text"] for c in sent] == ["thing 1 v1", "thing 2 v1", "thing 3 v1"]
    with session_scope(store_url) as session:
        stored = {r.key: r.data for r in stored_records(session, sync_id)}
    assert stored[record_key("item-2")]["version"] == 2

    # A page of changes only sends nothing; the same version keeps the key changes mode gives it.
    assert deliver(store_url, dest, sync_id, [item(1, version=5), item(3, version=5)]).sent == 0
    assert len(sent) == 3
    changes = destination_for(spec, {"text": "{name} v{version}"})
    assert isinstance(changes, ActionDestination)
    assert first_keys == [
        changes.idempotency_key(sync_id, record_key(r["id"]), content_hash(r), r["updated_at"])
        for r in (item(1), item(2))
    ]


def test_a_page_whose_commit_was_lost_sends_the_same_calls_again(
    store_url: str,
    connection_id: str,
    sync_id: str,
    sent: list[dict[str, Any]],
) -> None:
    """The records were not stored, so they are still new: sent again with the same keys,
    which the fleet takes for repeats."""
    dest = destination_for(f"action:{connection_id}:create_message_unkeyed", None, "new")
    with pytest.raises(RuntimeError), session_scope(store_url) as session:
        dest.deliver(session, Batch(sync_id, "run-1", ITEMS, [item(1)]))
        raise RuntimeError("killed before the commit")
    assert deliver(store_url, dest, sync_id, [item(1)]).sent == 1
    assert len(sent) == 2 and sent[0] == sent[1]


def test_a_spark_destination_runs_the_workflow_for_new_records_only(
    store_url: str,
    connection_id: str,
    sync_id: str,
    sent: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The spark connector is H1's; the destination needs only its action's declaration here.
    monkeypatch.setattr(SparkDestination, "resolve", lambda self, session: RUN)
    dest = destination_for(f"spark:{connection_id}:wf-9", {"input": "{name} v{version}"}, "new")
    assert deliver(store_url, dest, sync_id, [item(1)]).sent == 1
    assert deliver(store_url, dest, sync_id, [item(1, version=2), item(2)]).sent == 1
    assert deliver(store_url, dest, sync_id, [item(1, version=3), item(2, version=3)]).sent == 0
    assert [(c["action"], c["params"]) for c in sent] == [
        (RUN_WORKFLOW, {"workflow_id": "wf-9", "input": "thing 1 v1"}),
        (RUN_WORKFLOW, {"workflow_id": "wf-9", "input": "thing 2 v1"}),
    ]
    with session_scope(store_url) as session:
        versions = {r.key: r.data["version"] for r in stored_records(session, sync_id)}
    assert versions == {record_key("item-1"): 3, record_key("item-2"): 3}
