"""The sandbox's options: one frozen dataclass, validated once, and the flags that fill it.

Both command lines (``python -m spark_integrations.sandbox``, argparse, and
``spark-integrations sandbox``, click)
are built from :data:`FLAGS`, so they cannot drift apart; :func:`options_from_flags` turns the
parsed values into :class:`SandboxOptions`, whose constructor refuses bad values with one
sentence (a :class:`ValueError`) that both command lines show as a usage error.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "ALL_FAULT_KINDS",
    "FAULT_KINDS",
    "FLAGS",
    "Flag",
    "SandboxOptions",
    "decode_webhook_secret",
    "options_from_flags",
]

# The kinds of injected fault drawn by default; see ``sandbox/faults.py``.
FAULT_KINDS: tuple[str, ...] = ("500", "502", "503", "slow", "drop", "malformed")
# Kinds injected only when named: ``429`` (a rate limit the sandbox's own buckets did not cause,
# as a provider's other limits do).
OPT_IN_FAULT_KINDS: tuple[str, ...] = ("429",)
ALL_FAULT_KINDS: tuple[str, ...] = FAULT_KINDS + OPT_IN_FAULT_KINDS

MAX_RECORDS = 10_000_000


def decode_webhook_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>``.

    Raises:
        ValueError: the secret lacks the ``whsec_`` prefix or its key is not non-empty base64.
    """
    prefix, sep, encoded = secret.partition("_")
    if prefix != "whsec" or not sep or not encoded:
        raise ValueError("--webhook-secret must look like whsec_<base64 key>.")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("--webhook-secret must be whsec_ followed by valid base64.") from None
    if not key:
        raise ValueError("--webhook-secret holds an empty key.")
    return key


def _finite(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}.")
    if math.isnan(value) or not (low <= value <= high) or math.isinf(value):
        bound = f"between {low:g} and {high:g}" if high != math.inf else f"at least {low:g}"
        raise ValueError(f"{name} must be a finite number {bound}, not {value!r}.")


@dataclass(frozen=True)
class SandboxOptions:
    """How one sandbox behaves; each field is a flag (``rate_limit`` is ``--rate-limit``).

    Attributes:
        host: Address to listen on.
        port: TCP port; 0 picks a free one (see ``SandboxServer.url``).
        rate_limit: Requests per second allowed per credential; 0 means unlimited.
        burst: Seconds of traffic the token bucket holds: capacity is ``max(1, rate * burst)``.
        fault_rate: Probability (0..1) that an API request gets an injected fault.
        token_ttl: Lifetime of issued access tokens in seconds (may be fractional).
        records: Number of items in the generated dataset.
        churn: Items updated per second by the background churn thread.
        api_key: A static key accepted as bearer token, ``X-API-Key`` or ``?api_key=``.
        client_id: The one OAuth client (also the HTTP Basic user).
        client_secret: That client's secret (also the HTTP Basic password).
        webhook_url: Where ``message.created`` events are POSTed; needs ``webhook_secret``.
        webhook_secret: Standard Webhooks signing secret, ``whsec_<base64 key>``.
        slow_seconds: Delay of a "slow answer" fault.
        seed: Seed of the random generator (dataset, churn, faults); None for a random one.
        fault_kinds: Which fault kinds may be injected (a subset of :data:`ALL_FAULT_KINDS`).
    """

    host: str = "127.0.0.1"
    port: int = 8140
    rate_limit: float = 0.0
    burst: float = 0.1
    fault_rate: float = 0.0
    token_ttl: float = 3600.0
    records: int = 1000
    churn: float = 0.0
    api_key: str | None = None
    client_id: str = "sandbox"
    client_secret: str = "sandbox-secret"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    slow_seconds: float = 2.0
    seed: int | None = None
    fault_kinds: tuple[str, ...] = FAULT_KINDS

    def __post_init__(self) -> None:
        """Refuse bad values with one sentence naming the flag, so no server starts half-wrong."""
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError("--host must be a non-empty address, like 127.0.0.1.")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be an integer between 0 and 65535, not {self.port!r}.")
        _finite("--rate-limit", self.rate_limit, 0.0)
        _finite("--burst", self.burst, 0.0)
        if self.burst <= 0:
            raise ValueError(f"--burst must be a number of seconds above 0, not {self.burst!r}.")
        _finite("--fault-rate", self.fault_rate, 0.0, 1.0)
        _finite("--token-ttl", self.token_ttl, 0.0)
        if self.token_ttl <= 0:
            raise ValueError(f"--token-ttl must be above 0 seconds, not {self.token_ttl!r}.")
        if not isinstance(self.records, int) or not 0 <= self.records <= MAX_RECORDS:
            raise ValueError(
                f"--records must be an integer between 0 and {MAX_RECORDS}, not {self.records!r}."
            )
        _finite("--churn", self.churn, 0.0)
        _finite("--slow-seconds", self.slow_seconds, 0.0)
        if self.api_key is not None and not self.api_key:
            raise ValueError("--api-key must not be empty.")
        if not self.client_id or ":" in self.client_id:
            raise ValueError("--client-id must be non-empty and hold no colon.")
        if not self.client_secret:
            raise ValueError("--client-secret must not be empty.")
        self._check_webhook()
        if not self.fault_kinds or any(k not in ALL_FAULT_KINDS for k in self.fault_kinds):
            raise ValueError(
                f"--fault-kinds must name some of {', '.join(ALL_FAULT_KINDS)}, "
                f"not {','.join(self.fault_kinds) or 'nothing'}."
            )

    def _check_webhook(self) -> None:
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError(
                "--webhook-url and --webhook-secret go together: give both or neither."
            )
        if self.webhook_url is not None:
            parts = urlsplit(self.webhook_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    f"--webhook-url must be an http:// or https:// URL, not {self.webhook_url!r}."
                )
        if self.webhook_secret is not None:
            decode_webhook_secret(self.webhook_secret)


@dataclass(frozen=True)
class Flag:
    """One command-line flag of the sandbox, shared by the argparse and click command lines.

    Attributes:
        name: The flag, like ``--rate-limit``.
        field: The :class:`SandboxOptions` field it fills.
        kind: ``int``, ``float`` or ``str``: how the text is converted.
        metavar: Placeholder shown in ``--help``.
        help: One line of help.
    """

    name: str
    field: str
    kind: type[int] | type[float] | type[str]
    metavar: str
    help: str

    @property
    def default_text(self) -> str:
        """The :class:`SandboxOptions` default as ``--help`` shows it (``0``, ``none``...)."""
        value: object = _DEFAULTS[self.field]
        if value is None:
            return "none"
        if isinstance(value, tuple):
            return ",".join(value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


_DEFAULTS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(SandboxOptions)}

FLAGS: tuple[Flag, ...] = (
    Flag("--host", "host", str, "HOST", "Address to listen on."),
    Flag("--port", "port", int, "PORT", "TCP port; 0 picks a free port."),
    Flag("--rate-limit", "rate_limit", float, "N", "Requests/s per credential; 0 = unlimited."),
    Flag("--burst", "burst", float, "SECONDS", "Bucket capacity = max(1, rate * SECONDS)."),
    Flag("--fault-rate", "fault_rate", float, "F", "Probability (0..1) of a fault per request."),
    Flag("--fault-kinds", "fault_kinds", str, "K,K", "Fault kinds: " + ",".join(ALL_FAULT_KINDS)),
    Flag("--token-ttl", "token_ttl", float, "S", "Access-token lifetime in seconds."),
    Flag("--records", "records", int, "N", "Items in the dataset."),
    Flag("--churn", "churn", float, "N", "Items updated per second."),
    Flag("--api-key", "api_key", str, "KEY", "Static API key (bearer, X-API-Key or ?api_key=)."),
    Flag("--client-id", "client_id", str, "ID", "OAuth client id (also the Basic user)."),
    Flag("--client-secret", "client_secret", str, "SECRET", "OAuth client secret."),
    Flag("--webhook-url", "webhook_url", str, "URL", "POST message.created events here."),
    Flag("--webhook-secret", "webhook_secret", str, "WHSEC", "Signing secret, whsec_<base64>."),
    Flag("--slow-seconds", "slow_seconds", float, "S", "Delay of a slow-answer fault."),
    Flag("--seed", "seed", int, "N", "Random seed (dataset, churn, faults)."),
)


def options_from_flags(values: Mapping[str, object]) -> SandboxOptions:
    """Build options from parsed flag values keyed by field; None means "not given".

    Raises:
        ValueError: one sentence saying which flag is wrong and why.
    """
    given: dict[str, object] = {k: v for k, v in values.items() if v is not None}
    kinds = given.get("fault_kinds")
    if isinstance(kinds, str):
        given["fault_kinds"] = tuple(k.strip() for k in kinds.split(",") if k.strip())
    unknown = set(given) - set(_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown sandbox options: {', '.join(sorted(unknown))}.")
    return SandboxOptions(**given)  # type: ignore[arg-type]
