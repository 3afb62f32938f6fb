"""Arguments checked before anything is sent: a refusal is one sentence, and nothing is queued.

The fleet checks every task's kwargs too (and fails the task, with a dead letter, when they are
wrong); checking here first spares a round trip and a dead letter for a caller's typo, and
makes the mistake an ordinary ``TypeError`` or ``ValueError`` at the line that made it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from spark_integrations_client.names import MAX_ID_LENGTH, MAX_KEY_LENGTH

__all__ = ["check_flag", "check_id", "check_idempotency_key", "check_params", "check_timeout"]

# Printable text: no control character (C0, DEL, C1) and no lone surrogate, as the fleet wants.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What an HTTP header carries as it is: visible ASCII, spaces only inside.
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def check_id(name: str, value: object) -> str:
    """``value`` when it is an id the fleet accepts; else a TypeError or ValueError naming it."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}.")
    if not 0 < len(value) <= MAX_ID_LENGTH or _UNPRINTABLE.search(value):
        raise ValueError(
            f"{name} must be a non-empty string of at most {MAX_ID_LENGTH} printable characters."
        )
    return value


def check_idempotency_key(value: object) -> str | None:
    """``value`` when it is None or a key the fleet can store and forward in a header."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"idempotency_key must be a string or None, not {type(value).__name__}.")
    if not 0 < len(value) <= MAX_KEY_LENGTH or not _HEADER_SAFE.fullmatch(value):
        raise ValueError(
            f"idempotency_key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            "(it is forwarded in an HTTP header)."
        )
    return value


def check_params(value: object) -> dict[str, Any]:
    """A copy of ``value`` when it is a JSON object that travels unchanged; None means {}."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"params must be a dict, not {type(value).__name__}.")
    params = dict(value)
    try:
        text = json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"params must hold only JSON values: {exc}.") from None
    except RecursionError:
        raise ValueError("params are nested too deeply to send as JSON.") from None
    # Non-text keys, tuples and the like would arrive changed (json.dumps makes 1 into "1").
    if json.loads(text) != params:
        raise TypeError(
            "params must hold only JSON values (text keys; lists, not tuples), so that the "
            "fleet receives exactly what was given."
        )
    return params


def check_timeout(value: object) -> float | None:
    """``value`` as seconds to wait when it is a positive number; None waits without limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(value).__name__}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError("timeout must be a positive, finite number of seconds.")
    return float(value)


def check_flag(name: str, value: object) -> bool:
    """``value`` when it is a bool (the fleet refuses 0, 1 or "true" for a flag)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}.")
    return value
