"""logs.py's JSON format on odd input: every record is still one strict JSON line, through a
real handler (a formatter that raises makes logging print a multi-line "--- Logging error ---"
to stderr, or, for a RecursionError, raise into the caller), and no secret shows."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from spark_integrations import logs

SECRET = "pw-4f2c9a"


class _Broken:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


def _cycle() -> dict[str, Any]:
    found: dict[str, Any] = {"password": SECRET}
    found["self"] = found
    return found


class _Log:
    """A real StreamHandler with the JSON format, fed records as a logger makes them."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.handler = logging.StreamHandler(self.out)
        self.handler.setFormatter(logs.JsonFormatter())
        self.logger = logging.getLogger("tests.logs_odd_input")

    def warning(self, msg: Any, *args: Any, extra: dict[str, Any] | None = None) -> None:
        record = self.logger.makeRecord(
            self.logger.name, logging.WARNING, __file__, 1, msg, args, None, extra=extra
        )
        self.handler.handle(record)


CASES: dict[str, Callable[[_Log], None]] = {
    "a format its argument does not fit": lambda log: log.warning(
        "%d at https://u:%s@h/", "x", SECRET
    ),
    "a missing mapping key": lambda log: log.warning("%(a)s %(b)s", {"a": 1, "token": SECRET}),
    "too few arguments": lambda log: log.warning("%s and %s", f"https://u:{SECRET}@h/"),
    "a cyclic argument": lambda log: log.warning("state %s", _cycle()),
    "a cyclic argument among others": lambda log: log.warning("%s %s", _cycle(), 1),
    "a cyclic extra": lambda log: log.warning("x", extra={"state": _cycle()}),
    "an argument whose str() raises": lambda log: log.warning("broken %s", _Broken()),
    "an extra whose str() raises": lambda log: log.warning("x", extra={"thing": _Broken()}),
    "a NaN extra": lambda log: log.warning("x", extra={"ratio": float("nan")}),
    "a mapping as the message": lambda log: log.warning({"password": SECRET}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_odd_input_is_one_json_line_without_secrets(
    case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _Log()
    CASES[case](log)  # nothing raised into the caller
    lines = log.out.getvalue().splitlines()
    assert len(lines) == 1, lines
    parsed = json.loads(lines[0], parse_constant=pytest.fail)  # strict: no NaN
    assert parsed["level"] == "WARNING"
    assert SECRET not in lines[0]
    assert "Logging error" not in capsys.readouterr().err
