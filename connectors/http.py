"""HTTP for connectors: one pooled session per process, explicit timeouts, and one judge.

Every request the fleet sends goes through :func:`send`, which translates ``requests``'
exceptions into the fleet's error tree once (the token endpoint's grants too), and through
:func:`judge`, the one place that decides what an answer means for the caller:

* 2xx with a body that is not JSON: retriable (the request may have taken effect);
* 429: :class:`errors.RateLimitedError`, the provider's ``Retry-After`` (seconds or an HTTP date)
  or ``X-RateLimit-Reset`` as the wait;
* 408, 5xx and network errors: retriable, with the provider's wait when it gave one;
* 401: :class:`errors.AuthenticationError` (the caller re-authenticates once);
* any other 4xx: :class:`errors.FatalError`.

A request that may have reached the provider before it failed (the connection dropped after the
request was written, a read timeout, a 500 or 502) is marked ``maybe_applied``, so the caller can
tell an outcome that is unknown from one that is known not to have happened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from spark_integrations.constants import USER_AGENT
from spark_integrations.errors import (
    AuthenticationError,
    FatalError,
    RateLimitedError,
    RetriableError,
)
from spark_integrations.forks import on_fork

__all__ = [
    "DEFAULT_TIMEOUT",
    "NOT_APPLIED_STATUSES",
    "RATE_LIMIT_HEADERS",
    "RateLimitHint",
    "http_session",
    "json_body",
    "judge",
    "never_sent",
    "parse_json",
    "parse_retry_after",
    "proxies_for",
    "rate_limit_hint",
    "send",
]

#: (connect, read) seconds. Never unbounded: a provider that hangs must not hold a worker slot.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 30.0)
# Statuses after which the request is known not to have taken effect.
#: Error statuses meaning the request was not carried out (anything else may have been).
NOT_APPLIED_STATUSES = frozenset({408, 429, 503})
_EXCERPT = 160

_session: requests.Session | None = None


@lru_cache(maxsize=1024)
def proxies_for(scheme: str, netloc: str) -> dict[str, str]:
    """The proxies the environment (``HTTPS_PROXY``, ``NO_PROXY``...) gives one origin.

    Read once per origin and process: ``requests`` would read the environment, and look for a
    ``.netrc`` file, on every request, which costs more than a request to a nearby provider.
    Credentials come from the store, never from a ``.netrc``.
    """
    return dict(requests.utils.get_environ_proxies(f"{scheme}://{netloc}/"))


def http_session() -> requests.Session:
    """This process's ``requests.Session``: pooled keep-alive connections, no hidden retries.

    Forgotten after fork (:mod:`forks`), so a prefork child never shares a socket with its
    parent. Retries are the task's business (with budgets and backoff), so urllib3's own are
    off. The environment's proxy settings are applied per origin by :func:`send` (see
    :func:`proxies_for`).
    """
    global _session
    session = _session
    if session is None:
        session = requests.Session()
        session.trust_env = False
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        _session = session
    return session


@on_fork
def _forget_session() -> None:
    """After fork: the parent's session (and its sockets) stays the parent's."""
    global _session
    _session = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RateLimitHint:
    """What an answer's headers say about the provider's limit."""

    limit: float | None = None
    remaining: float | None = None
    reset_in: float | None = None  # seconds until the window resets
    retry_after: float | None = None
    bucket: str | None = None  # the provider's name for the budget it counted (Discord)


def _header_float(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw.split(",")[0].strip())
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None


#: The header names :func:`rate_limit_hint` reads unless a connector declares its own.
RATE_LIMIT_HEADERS: Mapping[str, tuple[str, ...]] = {
    "limit": ("X-RateLimit-Limit", "RateLimit-Limit"),
    "remaining": ("X-RateLimit-Remaining", "RateLimit-Remaining"),
    "reset": ("X-RateLimit-Reset", "RateLimit-Reset"),
    "reset_after": (),
    "bucket": (),
    "retry_after": ("Retry-After",),
}


def rate_limit_hint(
    headers: Mapping[str, str],
    now: float | None = None,
    names: Mapping[str, str] | None = None,
) -> RateLimitHint:
    """Read ``Retry-After`` and the common ``X-RateLimit-*`` / ``RateLimit-*`` headers.

    ``X-RateLimit-Reset`` is read as epoch seconds when it is larger than a year of seconds,
    else as seconds from now (both conventions are in use). ``names`` replaces the header read
    for a field (``limit``, ``remaining``, ``reset``, ``reset_after``: seconds from now, which
    wins over ``reset``; ``bucket``; ``retry_after``), as a connector declares them.
    """
    now = time.time() if now is None else now

    def named(field: str) -> tuple[str, ...]:
        declared = (names or {}).get(field)
        return (declared,) if declared else tuple(RATE_LIMIT_HEADERS[field])

    reset = _header_float(headers, *named("reset"))
    reset_in = None
    if reset is not None:
        reset_in = max(0.0, reset - now) if reset > 31_536_000 else max(0.0, reset)
    after = _header_float(headers, *named("reset_after"))
    if after is not None:
        reset_in = max(0.0, after)
    retry = next((headers.get(n) for n in named("retry_after") if headers.get(n)), None)
    bucket = next((headers.get(n) for n in named("bucket") if headers.get(n)), None)
    return RateLimitHint(
        limit=_header_float(headers, *named("limit")),
        remaining=_header_float(headers, *named("remaining")),
        reset_in=reset_in,
        retry_after=parse_retry_after(retry, now),
        bucket=bucket.strip()[:200] if bucket else None,
    )


def _excerpt(response: requests.Response) -> str:
    text = " ".join((response.text or "").split())
    return text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else "")


def judge(response: requests.Response, *, connector: str) -> None:
    """Raise the error an unsuccessful answer means for the caller; return for a 2xx.

    A 3xx is refused: requests are sent without following redirects (a credential must not
    follow a ``Location`` elsewhere), so a redirect means nothing was done where the request
    went (GitHub's renamed or moved repository answers 301 or 307), and returning its body as
    the result would report a success that never happened."""
    status = response.status_code
    if status < 300:
        return
    where = f"{connector} answered {status}"
    if status < 400:
        raise FatalError(
            f"{where}, a redirect: the resource has moved and redirects are not followed; "
            "update the connection's base_url or the params.",
            connector=connector,
            status=status,
            response=response,
        )
    hint = rate_limit_hint(response.headers)
    if status == 429:
        wait = hint.retry_after if hint.retry_after is not None else hint.reset_in
        raise RateLimitedError(
            f"{where} (rate limited).",
            connector=connector,
            status=status,
            response=response,
            retry_after=wait,
        )
    if status == 401:
        raise AuthenticationError(
            f"{where}: the provider refused the credentials.",
            connector=connector,
            status=status,
            response=response,
        )
    if status == 408 or status >= 500:
        raise RetriableError(
            f"{where}: {_excerpt(response)}",
            connector=connector,
            status=status,
            response=response,
            retry_after=hint.retry_after,
            maybe_applied=status not in NOT_APPLIED_STATUSES,
        )
    raise FatalError(
        f"{where}: {_excerpt(response)}", connector=connector, status=status, response=response
    )


_BODY = "_spark_json_body"


def json_body(response: requests.Response) -> Any:
    """The answer's body decoded from JSON, decoded once per response whoever asks (the
    connector for the records, the paginator for the next token).

    Raises:
        ValueError: the body is not JSON.
    """
    cached = response.__dict__.get(_BODY, _BODY)
    if cached is not _BODY:
        return cached
    body = response.json()
    response.__dict__[_BODY] = body
    return body


def parse_json(response: requests.Response, *, connector: str) -> Any:
    """The body of a successful answer as JSON; ``None`` for an empty body.

    A 2xx whose body does not parse is retriable, and may have taken effect.
    """
    if not response.content:
        return None
    try:
        return json_body(response)
    except ValueError:
        raise RetriableError(
            f"{connector} answered {response.status_code} with a body that is not valid JSON.",
            connector=connector,
            status=response.status_code,
            response=response,
            maybe_applied=True,
        ) from None


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach the provider (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, NewConnectionError | ConnectTimeoutError):
            return True
        reason = getattr(cause, "reason", None)
        if isinstance(reason, BaseException):
            cause = reason
            continue
        args = getattr(cause, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        cause = nested or cause.__cause__ or cause.__context__
    return False


def send(
    method: str,
    url: str,
    *,
    connector: str,
    session: requests.Session | None = None,
    auth: requests.auth.AuthBase | None = None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    judged: bool = True,
    target: str = "",
    stream: bool = False,
) -> requests.Response:
    """Send one request and return the answer: the one place where ``requests``' exceptions
    become the fleet's, and where answers are judged (:func:`judge`).

    Args:
        judged: judge the answer (an error status raises); False returns any answer, for the
            token endpoint, which reads its answers by OAuth's rules.
        stream: leave a successful answer's body unread (``requests``' ``stream``), for a
            listing read incrementally; the caller closes the response. An error answer's
            body is read by the judgement, as always.
        target: what messages call the far end (default: the connector's name), e.g.
            ``"sandbox's token endpoint"``.

    Raises:
        FatalError: the URL is invalid, or the request cannot be built or its head written (a
            header or body the encoder refuses); nothing was sent.
        RetriableError: a network failure or a timeout; ``maybe_applied`` unless the request
            certainly never left.
    """
    session = session or http_session()
    who = target or connector
    parts = urlsplit(url)
    try:
        response = session.request(
            method,
            url,
            proxies=proxies_for(parts.scheme, parts.netloc) if not session.trust_env else None,
            params=params,
            json=json,
            data=data,
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            allow_redirects=False,
            stream=stream,
        )
        if stream and response.status_code >= 300:
            # An error answer is read whole (it is small) so that every judgement can quote it
            # and its connection goes back to the pool, whoever keeps the exception.
            response.content  # noqa: B018
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.MissingSchema,
    ) as exc:
        raise FatalError(
            f"{who} has an invalid URL ({type(exc).__name__}); check its base_url.",
            connector=connector,
        ) from None
    except (
        requests.exceptions.InvalidHeader,
        requests.exceptions.InvalidJSONError,
        ValueError,
        TypeError,
    ) as exc:
        # Raised while the request is built or its head written (a header or body the encoder
        # refuses): nothing reached the provider. Not chained: the encoder's error holds the
        # value, which may be a credential.
        raise FatalError(
            f"{who}: the request cannot be sent as built ({type(exc).__name__}).",
            connector=connector,
        ) from None
    except requests.Timeout as exc:
        sent = not never_sent(exc)
        raise RetriableError(
            f"{who} did not answer within the timeout ({type(exc).__name__}).",
            connector=connector,
            maybe_applied=sent,
        ) from None
    except requests.RequestException as exc:
        sent = not never_sent(exc)
        what = "dropped the connection" if sent else "could not be reached"
        raise RetriableError(
            f"{who} {what} ({type(exc).__name__}).", connector=connector, maybe_applied=sent
        ) from None
    if judged:
        judge(response, connector=connector)
    return response
