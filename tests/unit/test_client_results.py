"""The client distribution's mapping of result payloads and task failures, and its boundary:
the names it writes out are the fleet's, it imports nothing of the fleet, and it depends on
Celery alone."""

from __future__ import annotations

import ast
import dataclasses
import pickle
import tomllib
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from spark_integrations_client import (
    CallFailedError,
    CallResult,
    ResultTimeoutError,
    SyncFailedError,
    SyncResult,
    SyncSkipped,
    UnexpectedResultError,
    UnknownConnectionError,
    UnknownSyncError,
)
from spark_integrations_client import names as client_names
from spark_integrations_client.failures import call_failure, failure_reason, sync_failure
from spark_integrations_client.results import call_result, sync_result

from spark_integrations import constants
from spark_integrations.errors import CallFailedError as FleetCallFailedError
from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.tasks import kwargs as fleet_kwargs

CLIENT = Path(__file__).resolve().parents[2] / "client"


def test_a_call_payload_becomes_a_call_result() -> None:
    result = call_result({"ok": True, "data": [1, 2], "attempts": 1}, task_id="t1")
    assert result == CallResult(data=[1, 2], attempts=1, task_id="t1")
    assert (result.ok, result.replayed, result.found, dict(result.extra)) == (
        True,
        False,
        False,
        {},
    )


def test_replayed_found_and_unknown_keys_are_kept() -> None:
    replay = call_result({"ok": True, "data": {"id": 1}, "attempts": 0, "replayed": True})
    assert replay.replayed and replay.attempts == 0 and not replay.found
    found = call_result({"ok": True, "data": {"id": 2}, "attempts": 1, "found": True, "new": 5})
    assert found.found and found.extra == {"new": 5}


def test_results_are_frozen() -> None:
    result = call_result({"ok": True, "data": None, "attempts": 0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.attempts = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (None, "is a NoneType, not a JSON object"),
        ([1], "is a list, not a JSON object"),
        ({"data": 1, "attempts": 1}, "does not say ok: true"),
        ({"ok": False, "data": 1, "attempts": 1}, "does not say ok: true"),
        ({"ok": True, "attempts": 1}, "has no 'data'"),
        ({"ok": True, "data": 1}, "no whole number 'attempts'"),
        ({"ok": True, "data": 1, "attempts": True}, "no whole number 'attempts'"),
        ({"ok": True, "data": 1, "attempts": -1}, "no whole number 'attempts'"),
    ],
)
def test_a_call_payload_without_the_contracts_shape_is_refused(payload: Any, words: str) -> None:
    with pytest.raises(UnexpectedResultError, match=words):
        call_result(payload)


def test_a_sync_payload_becomes_a_run_or_a_skip() -> None:
    run = sync_result(
        {
            "ok": True,
            "sync_id": "s1",
            "run_id": "r1",
            "records": 0,
            "pages": 1,
            "cursor": None,
            "retries": 0,
        },
        sync_id="s1",
        task_id="t1",
    )
    assert run == SyncResult("s1", "r1", 0, 1, None, "t1", {"retries": 0})
    assert run.ok and not run.skipped
    # The contract's bare skip: the sync id asked for stands in for the one not named.
    skip = sync_result({"ok": True, "skipped": True, "reason": "busy."}, sync_id="s9")
    assert skip == SyncSkipped(sync_id="s9", reason="busy.")
    assert skip.ok and skip.skipped


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"ok": True, "run_id": "r", "records": 1, "pages": 1}, "no text 'sync_id'"),
        ({"ok": True, "sync_id": "s", "records": 1, "pages": 1}, "no text 'run_id'"),
        ({"ok": True, "sync_id": "s", "run_id": "r", "pages": 1}, "'records'"),
        ({"ok": True, "sync_id": "s", "run_id": "r", "records": 1.5, "pages": 1}, "'records'"),
        ({"ok": True, "sync_id": "s", "run_id": "r", "records": 1}, "'pages'"),
        ("done", "is a str, not a JSON object"),
    ],
)
def test_a_sync_payload_without_the_contracts_shape_is_refused(payload: Any, words: str) -> None:
    with pytest.raises(UnexpectedResultError, match=words):
        sync_result(payload, sync_id="s")


def rebuilt(exc_type: str, message: str, module: str | None) -> BaseException:
    """A failure as a client process sees it: rebuilt by Celery from the JSON result."""
    app = Celery("mapping", set_as_current=False)
    try:
        error: BaseException = app.backend.exception_to_python(
            {"exc_type": exc_type, "exc_module": module, "exc_message": [message]}
        )
        return error
    finally:
        app.close()


@pytest.mark.parametrize(
    "module",
    # The fleet's module where it is imported (this test process), a stand-in class where it
    # is not (the client's own process, which has no fleet).
    ["spark_integrations.errors", "not_imported.errors"],
)
def test_failures_map_by_the_fleets_sentence(module: str) -> None:
    unknown = call_failure(
        rebuilt("CallFailedError", "no connection has the id 'x'.", module),
        task_id="t",
        connection_id="x",
        action="a",
    )
    assert type(unknown) is UnknownConnectionError
    assert (unknown.reason, unknown.error_type, unknown.connection_id) == (
        "no connection has the id 'x'.",
        "CallFailedError",
        "x",
    )
    other = call_failure(
        rebuilt("CallFailedError", "connector sandbox has no action 'z'.", module),
        task_id="t",
        connection_id="c",
        action="z",
    )
    assert type(other) is CallFailedError and other.action == "z"
    gone = sync_failure(rebuilt("UsageError", "no sync 's'.", module), task_id="t", sync_id="s")
    assert type(gone) is UnknownSyncError
    failed = sync_failure(
        rebuilt("SyncFailedError", "the destination refused a page: x.", module),
        task_id="t",
        sync_id="s",
    )
    assert type(failed) is SyncFailedError and failed.error_type == "SyncFailedError"


def test_the_fleets_own_errors_name_their_cause_as_the_client_reads_it() -> None:
    # The fleet's exceptions, as the worker raises them (the same text reaches the result).
    assert failure_reason(FleetCallFailedError("no connection has the id 'x'.")) == (
        "no connection has the id 'x'."
    )
    assert isinstance(
        sync_failure(NotFoundError("no sync s1."), task_id="t", sync_id="s1"), UnknownSyncError
    )
    assert isinstance(
        sync_failure(UsageError("no sync 's1'; `syncs list` shows them."), task_id="", sync_id=""),
        UnknownSyncError,
    )
    assert failure_reason(ValueError(1, 2)) == "(1, 2)"
    assert failure_reason(KeyError()) == "KeyError"


@pytest.mark.parametrize(
    "error",
    [
        UnknownConnectionError("no connection has the id 'x'.", task_id="t", connection_id="x"),
        UnknownSyncError("no sync 's'.", task_id="t", sync_id="s", error_type="UsageError"),
        ResultTimeoutError("t-1", 2.5),
    ],
)
def test_the_errors_pickle_with_their_attributes(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_the_contract_names_are_the_fleets() -> None:
    assert client_names.TASK_CALL == constants.TASK_CALL
    assert client_names.TASK_SYNC == constants.TASK_SYNC
    assert client_names.QUEUE_CALLS == constants.QUEUE_CALLS
    assert client_names.QUEUE_SYNCS == constants.QUEUE_SYNCS
    assert client_names.QUEUE_BACKFILLS == constants.QUEUE_BACKFILLS
    assert client_names.MAX_ID_LENGTH == fleet_kwargs.MAX_ID_LENGTH
    assert client_names.MAX_KEY_LENGTH == fleet_kwargs.MAX_KEY_LENGTH


def test_the_client_imports_nothing_of_the_fleet() -> None:
    files = sorted((CLIENT / "spark_integrations_client").glob("*.py"))
    assert len(files) >= 5
    imported: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = {"celery", "kombu"}  # kombu is Celery's own messaging library
    stdlib = {
        "__future__",
        "collections",
        "dataclasses",
        "json",
        "math",
        "os",
        "re",
        "types",
        "typing",
        "urllib",
    }
    assert imported - stdlib - third_party == {"spark_integrations_client"}, sorted(imported)


def test_the_client_distribution_depends_on_celery_alone() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "automagik-spark-integrations-client"
    assert [d.split(">")[0] for d in project["dependencies"]] == ["celery"]
    assert {
        k: [d.split(">")[0] for d in v] for k, v in project["optional-dependencies"].items()
    } == {"redis": ["celery[redis]"]}
    assert project["requires-python"] == ">=3.11"
    assert (CLIENT / "spark_integrations_client" / "py.typed").is_file()
