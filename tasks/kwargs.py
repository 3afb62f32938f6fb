"""Checks of the kwargs a caller sends with a task (CONTRACT.md), each refusal one sentence.

Whatever a caller puts in a message, a task either runs with it or fails at once with a
:class:`UsageError` (and a dead letter): an id the store cannot look up (a NUL, a lone
surrogate, a megabyte) would otherwise fail deep in the store and be taken for the store being
down, and an idempotency key that cannot travel in a header would fail at the provider's door.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from spark_integrations.constants import FORWARDED_KEY_PREFIX
from spark_integrations.errors import UsageError

__all__ = ["MAX_ID_LENGTH", "MAX_KEY_LENGTH", "check_id", "check_idempotency_key", "forward_key"]

#: The longest id a task accepts (a connection's or a sync's id is a UUID).
MAX_ID_LENGTH = 200
#: The longest idempotency key (CONTRACT.md; Stripe's limit too).
MAX_KEY_LENGTH = 255
# Printable text: no control character (C0, DEL, C1) and no lone surrogate.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What an HTTP header carries as it is: visible ASCII, spaces only inside.
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def check_id(name: str, value: Any) -> str:
    """``value`` when it is a usable id, else a :class:`UsageError` naming ``name``."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_ID_LENGTH
        or _UNPRINTABLE.search(value)
    ):
        raise UsageError(
            f"{name} must be a non-empty string of at most {MAX_ID_LENGTH} printable characters."
        )
    return value


def check_idempotency_key(value: Any) -> str | None:
    """``value`` when it is ``None`` or a key that can be stored and forwarded in a header."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_KEY_LENGTH
        or not _HEADER_SAFE.fullmatch(value)
    ):
        raise UsageError(
            f"idempotency_key must be a string of 1 to {MAX_KEY_LENGTH} printable ASCII "
            "characters (it is forwarded in an HTTP header)."
        )
    return value


def forward_key(idempotency_key: str | None, task_id: str) -> str:
    """The key forwarded to a provider that honours one: the caller's, or one made from the
    task id (kept across retries), hashed when the id cannot travel in a header as it is."""
    if idempotency_key is not None:
        return idempotency_key
    key = f"{FORWARDED_KEY_PREFIX}{task_id}"
    if _HEADER_SAFE.fullmatch(key) and len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{FORWARDED_KEY_PREFIX}{digest}"
