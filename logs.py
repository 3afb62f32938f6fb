"""The fleet's log lines: fields that follow a task, and one JSON object per line on request.

``SPARK_INTEGRATIONS_LOG_FORMAT=json`` (``settings.operations.log_format``) makes every process
of the fleet (worker and its pool children, beat, gateway, the command line) write each record
as one JSON object on one line::

    {"ts": "2025-01-01T12:00:00.123456+00:00", "level": "INFO", "logger": "...", "message": "...",
     "host": "...", "pid": 123, "task_id": "...", "task_name": "integrations.call",
     "connection_id": "...", "connector": "sandbox", "action": "create_message", ...}

The fields of the work at hand live in a :class:`contextvars.ContextVar`: a worker opens a scope
per task (:func:`task_scope`, from Celery's ``task_prerun`` and ``task_postrun`` signals in
:mod:`workers.signals`) holding the task's id and name and the ids among its kwargs, and task
code adds what it learns on the way (:func:`add`: the connector of a call, the run of a sync) or
narrows a part of its work (:func:`bind`). A retried task keeps its id, so every attempt's lines
share it, on whichever host they run. A thread started for a task carries the fields when its
function is wrapped with :func:`carried`.

No secret in a line: values under secret-looking names (``redaction.is_secret_name``) are
masked, URLs in the message, the values and the traceback have their credentials masked
(``redaction.hide_urls``), and a mapping given as a message argument is redacted before it is
formatted. An exception's traceback is one string field, ``exception``, so a record is one line.

The text format (nothing set) is left as it was: this module changes nothing there but the
fields it keeps, which only the JSON format shows.

A neutral module beside :mod:`redaction`: every layer may import it.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token, copy_context
from datetime import UTC, datetime
from typing import IO, Any, ParamSpec, TypeVar

from spark_integrations.constants import ENV_PREFIX
from spark_integrations.redaction import REDACTED, hide_urls, is_secret_name, redact

__all__ = [
    "FIELDS",
    "JsonFormatter",
    "add",
    "bind",
    "bound",
    "carried",
    "configure",
    "configure_cli",
    "end_task_scope",
    "task_scope",
    "use_json",
]

#: The fields of the work at hand, in the order a JSON line shows them (others follow).
FIELDS = (
    "task_id",
    "task_name",
    "retries",
    "connector",
    "connection_id",
    "action",
    "sync_id",
    "run_id",
    "event_id",
    "subscriber_id",
    "delivery_id",
)
#: Task kwargs bound to a task's lines when they hold a short string (ids, an action's name).
TASK_KWARG_FIELDS = ("connection_id", "action", "sync_id", "run_id", "event_id", "delivery_id")
#: Longest id kept as a field: a malformed kwarg (a megabyte of text) must not flood every line.
MAX_FIELD_CHARS = 200

_fields: ContextVar[Mapping[str, Any] | None] = ContextVar("spark_integrations_log", default=None)

P = ParamSpec("P")
R = TypeVar("R")


def _kept(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields worth a place on a line: short strings, numbers and booleans; None drops."""
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, str):
            kept[name] = value[:MAX_FIELD_CHARS]
        elif isinstance(value, bool | int | float):
            kept[name] = value
        elif value is None:
            kept[name] = None
    return kept


def _merged(current: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(current or {})
    for name, value in _kept(fields).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every line logged inside the block (this thread or task only); a field
    given None is left out. The fields before the block come back after it."""
    token = _fields.set(_merged(_fields.get(), fields))
    try:
        yield
    finally:
        _fields.reset(token)


def add(**fields: Any) -> None:
    """Add ``fields`` to the lines of the scope that is open (a task's, or a :func:`bind`
    block's) until it ends; None removes a field. Outside any scope it does nothing, so task
    code called directly (tests, a command) leaves no field behind."""
    current = _fields.get()
    if current is not None:
        _fields.set(_merged(current, fields))


def bound() -> dict[str, Any]:
    """The fields lines get now."""
    return dict(_fields.get() or {})


def task_scope(task_id: str | None, task_name: str | None, retries: Any, kwargs: Any) -> Token[Any]:
    """Open the scope of one task execution (a worker's ``task_prerun``): its id, name and
    retries, and the ids among its kwargs. Returns the token that :func:`end_task_scope` takes."""
    fields: dict[str, Any] = {"task_id": task_id, "task_name": task_name}
    if isinstance(retries, int) and not isinstance(retries, bool):
        fields["retries"] = retries
    if isinstance(kwargs, Mapping):
        for name in TASK_KWARG_FIELDS:
            value = kwargs.get(name)
            if isinstance(value, str):
                fields[name] = value
    return _fields.set(_merged(None, fields))


def end_task_scope(token: Token[Any] | None) -> None:
    """Close a task's scope (a worker's ``task_postrun``): its fields leave the lines."""
    if token is not None:
        try:
            _fields.reset(token)
            return
        except ValueError:  # opened in another context: nothing to restore there
            pass
    _fields.set(None)


def carried(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run with the fields of now, for a thread that works for the task at hand (a new
    thread starts with none)."""
    context = copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run


# -- the JSON format ---------------------------------------------------------------------------

_HOST = socket.gethostname()
# Record attributes never shown as extras: the standard ones, Celery's ``data`` (a failed task's
# args and kwargs as text, which the message sums up) and uvicorn's ``color_message`` (the
# message again, with terminal colours).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message", "asctime", "taskName", "data", "color_message",
}  # fmt: skip


#: What stands for a value that cannot be shown (nested too deep, or a cycle).
_UNSHOWABLE = "[a value that cannot be shown]"


def _clean(value: Any) -> Any:
    """A message argument or an extra fit to show: redacted like a dead letter's kwargs
    (secret-looking keys masked at any depth, URLs masked)."""
    if isinstance(value, Mapping | list | tuple | str):
        try:
            return redact(value)
        except RecursionError:  # a cycle, or nesting past the interpreter's limit
            return _UNSHOWABLE
    return value


def _shown(value: Any) -> str:
    """``value`` as text, whatever its ``__str__`` does (URLs masked)."""
    try:
        return hide_urls(str(value))
    except Exception:  # a broken __str__ must not cost the line
        return f"<{type(value).__name__}>"


def _message(record: logging.LogRecord) -> str:
    """The record's message, its arguments cleaned first, its URLs masked. A message that does
    not take its arguments (a caller's mistake) is shown with their types only: a value the
    format would have placed in a URL, and masked there, must not show on its own."""
    args = record.args
    msg = record.msg if isinstance(record.msg, str) else _clean(record.msg)
    try:
        if isinstance(args, Mapping):
            text = str(msg) % _clean(args)
        elif args:
            text = str(msg) % tuple(_clean(a) for a in args)
        else:
            text = str(msg)
    except Exception:
        given = list(args) if isinstance(args, Mapping) else [type(a).__name__ for a in args or ()]
        text = f"{_shown(msg)} (arguments that do not fit the message: {', '.join(given)})"
    return hide_urls(text)


def _celery_task(record: logging.LogRecord) -> dict[str, Any]:
    """A Celery line about a task outside its execution (the worker's ``received``): the task's
    id and name from the line's arguments."""
    args = record.args
    if record.name.startswith("celery") and isinstance(args, Mapping):
        task_id, name = args.get("id"), args.get("name")
        if isinstance(task_id, str):
            return _kept({"task_id": task_id, "task_name": name if isinstance(name, str) else None})
    return {}


def _default(value: Any) -> str:
    # What json cannot write is written as str(): a dataclass's repr hides its repr=False fields.
    return _shown(value)


def _plain(value: Any) -> Any:
    """A value json writes as it is, else its text (a last resort for a line json refused)."""
    if isinstance(value, str | bool | int | None) or (
        isinstance(value, float) and math.isfinite(value)
    ):
        return value
    return _shown(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``host``, ``pid``, the bound fields (:data:`FIELDS` first), the record's
    extras, and ``exception`` (the traceback as one string) or ``stack`` when there is one.

    Written here rather than taken from python-json-logger: the fleet's order of fields, the
    redaction of a message's arguments before formatting and of every extra, and str() for
    what JSON cannot write would override nearly all the library does (about 40 lines).
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = {**_celery_task(record), **bound()}
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            "host": _HOST,
            "pid": record.process,
        }
        ordered = [*(n for n in FIELDS if n in fields), *(n for n in fields if n not in FIELDS)]
        extras = [
            (name, value)
            for name, value in record.__dict__.items()
            if name not in _STANDARD and name not in fields and not name.startswith("_")
        ]
        for name, value in [*((n, fields[n]) for n in ordered), *extras]:
            if name not in line:
                line[name] = REDACTED if is_secret_name(name) else _clean(value)
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = hide_urls(record.exc_text)
        if record.stack_info:
            line["stack"] = hide_urls(self.formatStack(record.stack_info))
        try:
            return json.dumps(line, default=_default, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError):  # NaN, a cycle: still one JSON line
            plain = {name: _plain(value) for name, value in line.items()}
            return json.dumps(plain, ensure_ascii=False)


def use_json(logger: logging.Logger) -> None:
    """Give every handler of ``logger`` the JSON format (Celery's, after it set them up)."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


def configure(
    log_format: str,
    *,
    level: int = logging.INFO,
    text_format: str | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Set up the root logger of a process that is not Celery's (the gateway, the command line).

    JSON: one handler on ``stream`` (standard error by default) replaces the root's, warnings
    included. Text: as ``logging.basicConfig(format=text_format)`` when ``text_format`` is
    given, else the process keeps what it had.
    """
    out = stream if stream is not None else sys.stderr
    if log_format == "json":
        handler = logging.StreamHandler(out)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(True)
    elif text_format is not None:
        logging.basicConfig(level=level, stream=out, format=text_format)


def configure_cli(environ: Mapping[str, str]) -> None:
    """The command line's own lines (warnings and above) as JSON when ``environ`` asks for it.

    Read here without judging the value: a wrong one is refused, naming the variable, by every
    command that reads the settings (:func:`settings.load`), not by ``--help``.
    """
    if environ.get(ENV_PREFIX + "LOG_FORMAT", "").strip().lower() == "json":
        configure("json", level=logging.WARNING)
