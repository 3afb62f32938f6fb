"""logs.py: the JSON line format, the fields that follow a task, and the masking of secrets."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from spark_integrations import logs
from spark_integrations.settings_operations import Operations


def record(
    msg: str = "hello",
    *args: Any,
    name: str = "spark_integrations.tasks",
    level: int = logging.INFO,
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, msg, args or None, exc_info)
    if len(args) == 1 and isinstance(args[0], dict):
        made.args = args[0]  # as logging does for a single mapping argument
    made.__dict__.update(extra)
    return made


def line(rec: logging.LogRecord) -> dict[str, Any]:
    text = logs.JsonFormatter().format(rec)
    assert "\n" not in text and "\r" not in text
    parsed = json.loads(text)
    assert isinstance(parsed, dict)
    return parsed


def test_a_line_has_its_time_level_logger_message_and_process_first() -> None:
    rec = record("sent %d of %s", 3, "five", level=logging.WARNING)
    out = line(rec)
    assert list(out)[:6] == ["ts", "level", "logger", "message", "host", "pid"]
    assert out["level"] == "WARNING"
    assert out["logger"] == "spark_integrations.tasks"
    assert out["message"] == "sent 3 of five"
    ts = datetime.fromisoformat(out["ts"])
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert ts == datetime.fromtimestamp(rec.created, tz=UTC)
    assert out["pid"] == rec.process


def test_bound_fields_come_in_their_order_after_the_process() -> None:
    with logs.bind(run_id="r1", connection_id="c1", task_id="t1", custom="x"):
        out = line(record())
    keys = list(out)
    assert keys[6:] == ["task_id", "connection_id", "run_id", "custom"]
    assert out["task_id"] == "t1" and out["run_id"] == "r1" and out["custom"] == "x"
    assert "task_id" not in line(record())  # gone after the block


def test_bind_nests_and_restores_and_none_leaves_a_field_out() -> None:
    with logs.bind(connection_id="c1", action="a"):
        with logs.bind(connection_id="c2", action=None, sync_id="s"):
            assert logs.bound() == {"connection_id": "c2", "sync_id": "s"}
        assert logs.bound() == {"connection_id": "c1", "action": "a"}
    assert logs.bound() == {}


def test_add_reaches_the_open_scope_only_and_does_nothing_outside_one() -> None:
    logs.add(connector="sandbox")
    assert logs.bound() == {}
    with logs.bind(task_id="t"):
        logs.add(connector="sandbox", run_id="r")
        logs.add(run_id=None)
        assert logs.bound() == {"task_id": "t", "connector": "sandbox"}
    assert logs.bound() == {}


def test_task_scope_holds_the_task_and_the_ids_among_its_kwargs() -> None:
    token = logs.task_scope(
        "tid",
        "integrations.call",
        2,
        {
            "connection_id": "conn",
            "action": "create_message",
            "params": {"text": "not a field"},
            "sync_id": {"not": "a string"},
            "event_id": "e" * 1000,
        },
    )
    try:
        fields = logs.bound()
        assert fields == {
            "task_id": "tid",
            "task_name": "integrations.call",
            "retries": 2,
            "connection_id": "conn",
            "action": "create_message",
            "event_id": "e" * logs.MAX_FIELD_CHARS,
        }
    finally:
        logs.end_task_scope(token)
    assert logs.bound() == {}


def test_end_task_scope_without_a_token_clears_the_fields() -> None:
    logs.task_scope("tid", "x", 0, None)
    logs.end_task_scope(None)
    assert logs.bound() == {}


def test_a_thread_started_with_carried_logs_with_the_fields_of_its_starter() -> None:
    seen: list[dict[str, Any]] = []
    with logs.bind(task_id="t", run_id="r"):
        plain = threading.Thread(target=lambda: seen.append(logs.bound()))
        wrapped = threading.Thread(target=logs.carried(lambda: seen.append(logs.bound())))
        plain.start(), wrapped.start()
        plain.join(), wrapped.join()
    assert seen[0] == {} or seen[1] == {}
    assert {"task_id": "t", "run_id": "r"} in seen


def test_celery_lines_about_a_task_name_it_outside_its_execution() -> None:
    rec = record(
        "Task %(name)s[%(id)s] received",
        {"id": "abc", "name": "integrations.sync", "kwargs": "{'sync_id': 's'}"},
        name="celery.worker.strategy",
    )
    out = line(rec)
    assert out["message"] == "Task integrations.sync[abc] received"
    assert out["task_id"] == "abc" and out["task_name"] == "integrations.sync"
    with logs.bind(task_id="inside"):
        assert line(rec)["task_id"] == "inside"


def test_an_exception_is_one_string_field_on_one_line() -> None:
    try:
        raise ValueError("broke\nover two lines")
    except ValueError:
        rec = record("failed", level=logging.ERROR, exc_info=sys.exc_info())
    out = line(rec)
    assert out["message"] == "failed"
    assert out["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: broke\nover two lines" in out["exception"]


def test_a_stack_is_one_string_field() -> None:
    rec = record("here")
    rec.stack_info = "Stack (most recent call last):\n  File x\n  File y"
    assert line(rec)["stack"].count("\n") == 2


def test_a_message_over_several_lines_stays_one_line() -> None:
    assert line(record("first\nsecond"))["message"] == "first\nsecond"


def test_secret_extras_are_masked_by_name_and_inside_mappings() -> None:
    rec = record(
        "calling",
        api_key="sk-1",
        params={"text": "hi", "nested": [{"refresh_token": "rt-1"}]},
        attempt=2,
        url="https://user:pw-1@host/path?code=oauth-code-1&state=s",
    )
    out = line(rec)
    text = json.dumps(out)
    for secret in ("sk-1", "rt-1", "pw-1", "oauth-code-1"):
        assert secret not in text
    assert out["api_key"] == "[redacted]"
    assert out["params"] == {"text": "hi", "nested": [{"refresh_token": "[redacted]"}]}
    assert out["attempt"] == 2
    assert out["url"] == "https://user:***@host/path?code=***&state=s"


def test_a_mapping_argument_is_redacted_before_it_is_formatted() -> None:
    rec = record("token answer %s", {"access_token": "at-1", "expires_in": 60})
    rec.args = ({"access_token": "at-1", "expires_in": 60},)
    out = line(rec)
    assert "at-1" not in out["message"] and "[redacted]" in out["message"]
    assert "60" in out["message"]
    named = record("%(who)s got %(client_secret)s", {"who": "w", "client_secret": "cs-1"})
    assert line(named)["message"] == "w got [redacted]"


def test_urls_in_the_message_and_the_traceback_are_masked() -> None:
    try:
        raise ConnectionError("cannot reach redis://:pw-2@host:6379/0")
    except ConnectionError:
        rec = record("store at %s", "postgresql://app:pw-3@db/x", exc_info=sys.exc_info())
    text = logs.JsonFormatter().format(rec)
    assert "pw-2" not in text and "pw-3" not in text
    assert "postgresql://app:***@db/x" in json.loads(text)["message"]


def test_a_secret_bound_field_is_masked() -> None:
    with logs.bind(task_id="t"):
        logs.add(webhook_secret="whsec-1")
        out = line(record())
    assert out["webhook_secret"] == "[redacted]"


def test_what_json_cannot_write_is_written_as_its_text_hiding_repr_false_fields() -> None:
    ops = Operations(console_token="c" * 40)
    out = line(record("settings", operations=ops, when=datetime(2025, 1, 2, tzinfo=UTC)))
    assert "c" * 40 not in json.dumps(out)
    assert out["operations"].startswith("Operations(")
    assert out["when"].startswith("2025-01-02")


def test_standard_and_celery_and_uvicorn_noise_attributes_are_not_fields() -> None:
    rec = record("m", data={"kwargs": "{'a': 1}"}, color_message="\x1b[1mm\x1b[0m")
    out = line(rec)
    assert "data" not in out and "color_message" not in out
    assert not {"args", "msg", "levelno", "pathname", "exc_text", "thread"} & set(out)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level put back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_configure_json_replaces_the_root_handlers(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    root_logger.addHandler(logging.StreamHandler(io.StringIO()))
    logs.configure("json", level=logging.INFO, stream=stream)
    assert len(root_logger.handlers) == 1
    logging.getLogger("gateway").info("listening on %s", "http://127.0.0.1:1")
    logging.getLogger("gateway").debug("not shown")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "listening on http://127.0.0.1:1"


def test_configure_text_is_basic_config(root_logger: logging.Logger) -> None:
    for handler in list(root_logger.handlers):
        root_logger.removeHandler(handler)
    stream = io.StringIO()
    logs.configure(
        "text", level=logging.INFO, stream=stream, text_format="%(levelname)s %(message)s"
    )
    logging.getLogger("gateway").info("plain")
    assert stream.getvalue() == "INFO plain\n"


def test_configure_text_without_a_format_leaves_the_process_alone(
    root_logger: logging.Logger,
) -> None:
    before = list(root_logger.handlers)
    logs.configure("text")
    assert root_logger.handlers == before


def test_the_command_line_writes_json_only_when_asked(root_logger: logging.Logger) -> None:
    before = list(root_logger.handlers)
    logs.configure_cli({"SPARK_INTEGRATIONS_LOG_FORMAT": "xml"})
    logs.configure_cli({})
    assert root_logger.handlers == before
    logs.configure_cli({"SPARK_INTEGRATIONS_LOG_FORMAT": " JSON "})
    assert [type(h.formatter) for h in root_logger.handlers] == [logs.JsonFormatter]
    assert root_logger.level == logging.WARNING


def test_use_json_gives_every_handler_of_a_logger_the_json_format() -> None:
    logger = logging.getLogger("spark-int-test-use-json")
    handlers = [logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())]
    try:
        for handler in handlers:
            logger.addHandler(handler)
        logs.use_json(logger)
        assert all(isinstance(h.formatter, logs.JsonFormatter) for h in handlers)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
