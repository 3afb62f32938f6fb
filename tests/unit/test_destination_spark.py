"""The ``spark:CONNECTION_ID:WORKFLOW_ID`` destination: how it is written, what it refers to
(a spark connection), and the call each new or changed record version makes (``run_workflow``
with the workflow id and the input: the record as compact sorted JSON, or the ``input``
template), keyed like any action destination's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery import current_app

from spark_integrations.connectors.actions import Action
from spark_integrations.destinations import Batch, destination_for
from spark_integrations.destinations.spark import RUN_WORKFLOW, SparkDestination
from spark_integrations.errors import NotFoundError, SkippableError, UsageError
from spark_integrations.store import session_scope
from tests.unit.test_destination_params import ITEMS, item

# What the spark destination needs of run_workflow, as the spark connector declares it.
RUN = Action(
    RUN_WORKFLOW, "POST", "/api/v1/workflows/{workflow_id}/run",
    params={"workflow_id": str, "input": str},
)  # fmt: skip


@pytest.mark.parametrize(
    "spec", ["spark", "spark:", "spark:c1", "spark:c1:", "spark::wf", "spark:c1:wf:x", "spark: :wf"]
)
def test_a_malformed_spark_destination_is_refused(spec: str) -> None:
    with pytest.raises(UsageError, match=r"written 'spark:CONNECTION_ID:WORKFLOW_ID'"):
        destination_for(spec)


def test_the_spark_destination_names_its_connection_and_workflow() -> None:
    dest = destination_for("spark:conn-1:0b9f-wf")
    assert isinstance(dest, SparkDestination)
    assert (dest.connection_id, dest.workflow_id, dest.action) == (
        "conn-1",
        "0b9f-wf",
        RUN_WORKFLOW,
    )
    assert dest.spec == "spark:conn-1:0b9f-wf"


def test_its_connection_must_exist_and_be_a_spark_one(store_url: str, connection_id: str) -> None:
    with session_scope(store_url) as session:
        with pytest.raises(NotFoundError, match=r"no connection 'nope' for the spark destination"):
            destination_for("spark:nope:wf").check(session)
        with pytest.raises(
            UsageError,
            match=rf"connection {connection_id} is a sandbox connection; the spark destination "
            "needs a spark connection",
        ):
            destination_for(f"spark:{connection_id}:wf").check(session)


def test_the_input_is_the_record_as_compact_sorted_json_or_the_template() -> None:
    record = {"name": "thing 1", "id": "item-1", "nested": {"b": 2, "a": "é"}}
    plain = destination_for("spark:c1:wf-1")
    assert isinstance(plain, SparkDestination)
    params = plain.params_for(RUN, record)
    assert params["workflow_id"] == "wf-1"
    assert params["input"] == '{"id":"item-1","name":"thing 1","nested":{"a":"\\u00e9","b":2}}'
    assert json.loads(params["input"]) == record

    templated = destination_for("spark:c1:wf-1", {"input": "{name}: {id}"})
    assert isinstance(templated, SparkDestination)
    assert templated.params_for(RUN, record) == {"workflow_id": "wf-1", "input": "thing 1: item-1"}
    with pytest.raises(SkippableError, match="no field 'title'"):
        destination_for("spark:c1:wf-1", {"input": "{title}"}).params_for(  # type: ignore[attr-defined]
            RUN, record
        )


def test_a_page_runs_the_workflow_once_per_new_or_changed_version(
    store_url: str, connection_id: str, sync_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, kwargs, queue: sent.append(kwargs))
    # The spark connector is H1's; the destination needs only its action's declaration here.
    monkeypatch.setattr(SparkDestination, "resolve", lambda self, session: RUN)
    dest = destination_for(f"spark:{connection_id}:wf-9", {"input": "{name} v{version}"})

    def deliver(records: list[dict[str, Any]]) -> Any:
        with session_scope(store_url) as session:
            return dest.deliver(session, Batch(sync_id, "run-1", ITEMS, records))

    assert deliver([item(1), item(2)]).sent == 2
    assert deliver([item(1), item(2)]).sent == 0
    assert deliver([item(1), item(2, version=3)]).sent == 1
    assert [(c["action"], c["params"]) for c in sent] == [
        (RUN_WORKFLOW, {"workflow_id": "wf-9", "input": "thing 1 v1"}),
        (RUN_WORKFLOW, {"workflow_id": "wf-9", "input": "thing 2 v1"}),
        (RUN_WORKFLOW, {"workflow_id": "wf-9", "input": "thing 2 v3"}),
    ]
    assert {c["connection_id"] for c in sent} == {connection_id}
    assert len({c["idempotency_key"] for c in sent}) == 3


def test_the_spark_connector_declares_what_the_destination_calls() -> None:
    from spark_integrations.connectors import get_connector

    connector = get_connector("spark")
    action = connector.get_action(RUN_WORKFLOW)
    assert {"workflow_id", "input"} <= set(action.params)
    assert action.params["input"] is str and not connector.resend_safe(action)
