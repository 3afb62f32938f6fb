"""Settings of the fleet's operation: webhook intake, logs and the operator's console.

Read by :func:`settings.load` (the one place the fleet reads its variables) into the
:class:`Operations` that :class:`settings.Settings` carries as ``operations``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spark_integrations.constants import ENV_PREFIX
from spark_integrations.errors import ConfigurationError

__all__ = [
    "DEFAULT_WEBHOOK_MAX_BYTES",
    "DEFAULT_WEBHOOK_TOLERANCE",
    "LOG_FORMATS",
    "Operations",
    "load_operations",
]

#: Seconds a signed webhook's timestamp may differ from the gateway's clock (replay window).
DEFAULT_WEBHOOK_TOLERANCE = 300
#: Largest webhook body the gateway reads (GitHub's own cap is 25 MB; most providers send KBs).
DEFAULT_WEBHOOK_MAX_BYTES = 5 * 1024 * 1024
#: ``SPARK_INTEGRATIONS_LOG_FORMAT``: human-readable lines, or one JSON object per line.
LOG_FORMATS = ("text", "json")
#: The shortest operator token the console accepts (bytes of text).
MIN_CONSOLE_TOKEN = 32


@dataclass(frozen=True)
class Operations:
    """How the fleet takes webhooks, writes logs and guards its console."""

    webhook_tolerance: int = DEFAULT_WEBHOOK_TOLERANCE
    webhook_max_bytes: int = DEFAULT_WEBHOOK_MAX_BYTES
    log_format: str = "text"
    #: A bearer token that opens the console in server mode (beside Flower's credentials).
    console_token: str | None = field(default=None, repr=False)


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(ENV_PREFIX + name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigurationError(
            f"{ENV_PREFIX}{name} must be a whole number from {low} to {high}, not {raw!r}."
        )
    return value


def load_operations(env: Mapping[str, str]) -> Operations:
    """Read and check the operation variables from ``env``."""
    log_format = env.get(ENV_PREFIX + "LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        raise ConfigurationError(
            f"{ENV_PREFIX}LOG_FORMAT must be {' or '.join(LOG_FORMATS)}, not {log_format!r}."
        )
    token = env.get(ENV_PREFIX + "CONSOLE_TOKEN", "").strip() or None
    if token is not None and len(token) < MIN_CONSOLE_TOKEN:
        raise ConfigurationError(
            f"{ENV_PREFIX}CONSOLE_TOKEN must be at least {MIN_CONSOLE_TOKEN} characters long "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    return Operations(
        webhook_tolerance=_whole(env, "WEBHOOK_TOLERANCE", DEFAULT_WEBHOOK_TOLERANCE, 1, 86400),
        webhook_max_bytes=_whole(
            env, "WEBHOOK_MAX_BYTES", DEFAULT_WEBHOOK_MAX_BYTES, 1024, 100 * 1024 * 1024
        ),
        log_format=log_format,
        console_token=token,
    )
