"""Error rules: how a declared connector classifies its provider's answers.

Many providers say more than their status does: Slack answers most errors as ``200`` with
``"ok": false``, Stripe says whether a request is worth retrying in ``Stripe-Should-Retry``,
Discord gives the wait of a 429 in its body. A connector declares :class:`ErrorRule` objects
(``error_rules``); :func:`classify` runs them over every answer, 2xx included, before the
generic status rules of :func:`connectors.http.judge`, and the first rule that matches decides:

- ``retry``: :class:`RetriableError` (``retry_after`` from the rule's wait);
- ``rate_limited``: :class:`RateLimitedError`;
- ``reauth``: :class:`AuthenticationError` (the request path re-authenticates once);
- ``fatal``: :class:`FatalError`;
- ``unknown``: :class:`RetriableError` with ``maybe_applied`` (never resent blindly);
- ``ok``: no error, and the generic rules are skipped.

Messages quote the provider's error code and text (from ``error_message_path``), bounded and on
one line; the request, and so any credential, is never quoted.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from spark_integrations.connectors.http import NOT_APPLIED_STATUSES, json_body, parse_retry_after
from spark_integrations.connectors.pagination.base import extract
from spark_integrations.errors import (
    AuthenticationError,
    FatalError,
    ProviderError,
    RateLimitedError,
    RetriableError,
)

__all__ = ["OUTCOMES", "ErrorRule", "classify", "provider_text"]

#: What a rule may decide.
OUTCOMES = ("retry", "rate_limited", "reauth", "fatal", "unknown", "ok")
# A quoted provider text is cut to this many characters.
_QUOTE = 200
_STATUS_CLASS = re.compile(r"^[1-5]xx$")
# A wait header's number above a year of seconds is an epoch time (as in http.rate_limit_hint).
_EPOCH_AFTER = 31_536_000


@dataclass(frozen=True)
class ErrorRule:
    """One classification rule: when an answer matches, what it means.

    Attributes:
        then: one of :data:`OUTCOMES`.
        status: a status, several, or a class such as ``"4xx"`` (``None``: any).
        body: dotted body paths and the value each must equal (a list: one of its values).
        headers: header names and the value each must equal, case-insensitively (a list: one
            of its values; ``"*"``: any value, the header need only be there).
        present: dotted body paths that must hold a value.
        wait_field: dotted body path of the seconds to wait (a number).
        wait_header: header holding the seconds to wait, an HTTP date, or an epoch time (a
            number above a year of seconds, such as GitHub's ``x-ratelimit-reset``).
        wait: seconds to wait when the answer says none.
        message: the sentence the error starts with (default: what the outcome means).
        pauses: which budget a matching answer speaks for: ``"connection"`` (the connection's
            own, as Discord's global limit) rather than the request's tier (``None``).
    """

    then: str
    status: int | str | tuple[int, ...] | None = None
    body: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    present: tuple[str, ...] = ()
    wait_field: str | None = None
    wait_header: str | None = None
    wait: float | None = None
    message: str | None = None
    pauses: str | None = None

    def __post_init__(self) -> None:
        if self.then not in OUTCOMES:
            raise ValueError(f"an error rule's then must be one of {', '.join(OUTCOMES)}.")
        if self.pauses not in (None, "connection", "tier"):
            raise ValueError("an error rule's pauses must be connection or tier.")
        if isinstance(self.status, str) and not _STATUS_CLASS.match(self.status):
            raise ValueError("an error rule's status class must look like '4xx'.")

    def matches(self, response: requests.Response) -> bool:
        """True when the answer meets every condition of the rule."""
        if not _status_matches(self.status, response.status_code):
            return False
        for name, expected in self.headers.items():
            if expected == "*":
                if response.headers.get(name) is None:
                    return False
                continue
            value = (response.headers.get(name) or "").strip().lower()
            options = expected if isinstance(expected, tuple | list) else (expected,)
            if value not in {str(o).lower() for o in options}:
                return False
        if not (self.body or self.present):
            return True
        body = _body(response)
        if body is None:
            return False
        for path, expected in self.body.items():
            value = extract(body, path)
            options = expected if isinstance(expected, tuple | list) else (expected,)
            if not any(_same(value, o) for o in options):
                return False
        return all(extract(body, path) is not None for path in self.present)

    def wait_of(self, response: requests.Response) -> float | None:
        """Seconds the answer says to wait, per the rule (``None``: not said)."""
        if self.wait_field:
            body = _body(response)
            value = extract(body, self.wait_field) if body is not None else None
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    value = None
            if isinstance(value, int | float) and not isinstance(value, bool):
                seconds = float(value)
                if math.isfinite(seconds) and seconds >= 0:
                    return seconds
        if self.wait_header:
            raw = response.headers.get(self.wait_header)
            wait = parse_retry_after(raw)
            if wait is not None and wait > _EPOCH_AFTER:
                # An epoch time (GitHub's x-ratelimit-reset), read as X-RateLimit-Reset is.
                wait = max(0.0, wait - time.time())
            if wait is not None:
                return wait
        return self.wait


def _status_matches(expected: int | str | tuple[int, ...] | None, status: int) -> bool:
    if expected is None:
        return True
    if isinstance(expected, str):
        return str(status)[0] == expected[0]
    if isinstance(expected, tuple | list):
        return status in expected
    return status == expected


def _same(value: Any, expected: Any) -> bool:
    # true must not equal 1, nor false 0.
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return bool(value == expected)


def _body(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return json_body(response)
    except ValueError:
        return None


def provider_text(response: requests.Response, paths: Sequence[str]) -> str:
    """The provider's error code and text found at ``paths``, on one line and bounded ("" when
    there is none). Only strings and numbers are quoted."""
    body = _body(response)
    if body is None:
        return ""
    found: list[str] = []
    for path in paths:
        value = extract(body, path)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = " ".join(str(value).split())
            if text and text not in found:
                found.append(text)
    quoted = ": ".join(found)
    return quoted if len(quoted) <= _QUOTE else quoted[: _QUOTE - 3] + "..."


_MEANING = {
    "retry": "failed for now",
    "rate_limited": "rate limited the request",
    "reauth": "refused the credentials",
    "fatal": "refused the request",
    "unknown": "answered without saying whether the request was carried out",
}


def classify(
    rules: Sequence[ErrorRule],
    response: requests.Response,
    *,
    connector: str,
    message_paths: Sequence[str] = (),
) -> bool:
    """Apply the first matching rule: raise its error, or return True for ``ok`` (the generic
    rules are then skipped); False when no rule matches."""
    for rule in rules:
        if not rule.matches(response):
            continue
        if rule.then == "ok":
            return True
        raise rule_error(rule, response, connector=connector, message_paths=message_paths)
    return False


def rule_error(
    rule: ErrorRule,
    response: requests.Response,
    *,
    connector: str,
    message_paths: Sequence[str] = (),
) -> ProviderError:
    """The error a matched rule means for this answer."""
    status = response.status_code
    said = provider_text(response, message_paths)
    lead = rule.message or f"{connector} {_MEANING[rule.then]}"
    text = f"{lead.rstrip('.')}" + (f" ({said})." if said else ".")
    common: dict[str, Any] = {"connector": connector, "status": status, "response": response}
    if rule.then == "rate_limited":
        return RateLimitedError(text, retry_after=rule.wait_of(response), **common)
    if rule.then == "retry":
        return RetriableError(
            text,
            retry_after=rule.wait_of(response),
            maybe_applied=status >= 500 and status not in NOT_APPLIED_STATUSES,
            **common,
        )
    if rule.then == "unknown":
        return RetriableError(
            text, retry_after=rule.wait_of(response), maybe_applied=True, **common
        )
    if rule.then == "reauth":
        return AuthenticationError(text, **common)
    return FatalError(text, **common)
