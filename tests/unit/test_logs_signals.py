"""workers/signals.py: a task's execution opens and closes its scope of log fields through
Celery's own trace (task_prerun / task_postrun), and Celery's handlers get the JSON format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from spark_integrations import logs
from spark_integrations.workers import signals


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Lines of the ``spark-int-test`` logger, as JSON, and of Celery's trace."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    loggers = [logging.getLogger("spark-int-test"), logging.getLogger("celery.app.trace")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_task_execution_logs_with_its_id_name_and_kwarg_ids_until_celery_logs_its_end(
    json_lines: io.StringIO,
) -> None:
    signals.connect()
    app = Celery("spark-int-test-logs", broker="memory://", set_as_current=False)
    app.conf.task_store_eager_result = False

    @app.task(name="integrations.call", bind=True, shared=False)
    def call(self: Any, connection_id: Any = None, action: Any = None, params: Any = None) -> str:
        logs.add(connector="sandbox")
        logging.getLogger("spark-int-test").info("calling")
        return "done"

    result = call.apply(
        kwargs={"connection_id": "c1", "action": "create_message", "params": {"x": 1}},
        task_id="task-1",
    )
    assert result.get() == "done"
    assert logs.bound() == {}  # closed with the task
    lines = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    mine = [ln for ln in lines if ln["logger"] == "spark-int-test"]
    assert len(mine) == 1
    assert {k: mine[0].get(k) for k in ("task_id", "task_name", "retries")} == {
        "task_id": "task-1",
        "task_name": "integrations.call",
        "retries": 0,
    }
    assert mine[0]["connection_id"] == "c1" and mine[0]["action"] == "create_message"
    assert mine[0]["connector"] == "sandbox"
    assert "params" not in mine[0]
    succeeded = [ln for ln in lines if ln["logger"] == "celery.app.trace"]
    assert succeeded and "succeeded" in succeeded[-1]["message"]
    assert succeeded[-1]["task_id"] == "task-1" and succeeded[-1]["connector"] == "sandbox"


def test_celery_handlers_get_the_json_format_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger("spark-int-test-celery-root")
    handler = logging.StreamHandler(io.StringIO())
    text = logging.Formatter("%(message)s")
    handler.setFormatter(text)
    logger.addHandler(handler)
    try:
        monkeypatch.setattr(signals, "_json", lambda: False)
        signals._on_setup_logger(logger=logger)
        assert handler.formatter is text
        monkeypatch.setattr(signals, "_json", lambda: True)
        signals._on_setup_logger(logger=logger)
        assert isinstance(handler.formatter, logs.JsonFormatter)
    finally:
        logger.removeHandler(handler)


def test_the_fleet_app_connects_the_log_handlers() -> None:
    from celery.signals import after_setup_logger, after_setup_task_logger, task_prerun

    import spark_integrations.workers.app  # noqa: F401 - connects on import

    for signal, handler in (
        (task_prerun, signals._on_task_prerun),
        (after_setup_logger, signals._on_setup_logger),
        (after_setup_task_logger, signals._on_setup_logger),
    ):
        assert any(receiver is handler for _, receiver in signal.receivers), signal
