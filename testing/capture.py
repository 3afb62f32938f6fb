"""Every log record a check causes, whatever the logger's level, propagation or handlers.

pytest's ``caplog`` hears only what reaches the root logger at the levels then set: a connector
logger set to ``WARNING``, a library logger that does not propagate, or ``logging.disable`` would
hide a secret logged at ``DEBUG``. :func:`every_record` makes every logger create its records
at every level for the duration of a check and keeps each one as it is handled; the loggers'
own handlers still receive only what their levels let through.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["every_record"]


@contextlib.contextmanager
def every_record() -> Iterator[list[logging.LogRecord]]:
    """Collect every record logged inside the block, at any level, from any logger."""
    records: list[logging.LogRecord] = []
    enabled = logging.Logger.isEnabledFor
    handle = logging.Logger.handle

    def always(self: logging.Logger, level: int) -> bool:
        return True

    def keep(self: logging.Logger, record: logging.LogRecord) -> None:
        records.append(record)
        if enabled(self, record.levelno):
            handle(self, record)

    logging.Logger.isEnabledFor = always  # type: ignore[method-assign]
    logging.Logger.handle = keep  # type: ignore[method-assign]
    try:
        yield records
    finally:
        logging.Logger.isEnabledFor = enabled  # type: ignore[method-assign]
        logging.Logger.handle = handle  # type: ignore[method-assign]
