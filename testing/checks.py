"""The contract's checks of one recording each: auth, actions, errors and rate-limit headers.

Each check builds a client from the recordings, serves the recorded answers (:class:`Replay`),
raises ``AssertionError`` listing every difference it finds, and appends what a reader could
see (results, exception texts) to ``evidence`` for the no-secret checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from spark_integrations.connectors.base import Connector
from spark_integrations.errors import (
    AuthenticationError,
    FatalError,
    ProviderError,
    RateLimitedError,
    RetriableError,
)
from spark_integrations.testing.compare import complete, request_problems, texts_of
from spark_integrations.testing.kinds import auth_kinds_of
from spark_integrations.testing.recordings import Recordings
from spark_integrations.testing.replay import SCOPE, Replay, call_target, make_client

__all__ = [
    "OUTCOMES",
    "Evidence",
    "check_action",
    "check_auth",
    "check_error",
    "check_rate_limit",
    "default_target",
    "learned",
    "outcome_of",
    "see",
]

#: What an error recording may expect.
OUTCOMES = ("ok", "retry", "rate_limited", "reauth", "fatal", "unknown")
Evidence = list[tuple[str, str]]
# Waits are compared to the second: a reset given as an epoch time moves with the clock.
_WAIT_TOLERANCE = 1.0


def outcome_of(exc: BaseException | None) -> str:
    """The class of a failure as the request path acts on it."""
    if exc is None:
        return "ok"
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, RetriableError):
        return "unknown" if exc.maybe_applied else "retry"
    if isinstance(exc, AuthenticationError):
        return "reauth"
    if isinstance(exc, FatalError):
        return "fatal"
    return f"not a provider error ({type(exc).__name__})"


def _unserved(replay: Replay, what: str) -> list[str]:
    """A recorded answer left unserved was never judged: the connector stopped short of it."""
    if not replay.queue:
        return []
    return [
        f"{what}: {len(replay.queue)} recorded answer(s) never asked for (the connector sent "
        f"{len(replay.sent)} request(s) and stopped short of them)"
    ]


def _fail(problems: list[str]) -> None:
    if problems:
        raise AssertionError("; ".join(problems))


def see(evidence: Evidence, where: str, *values: Any) -> None:
    evidence.extend((where, text) for text in texts_of(*values))


def default_target(recs: Recordings) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """The request an auth check sends when its entry names none: the first recorded action
    (or the first stream's first page), with its recorded answer."""
    for entry in recs.entries("actions"):
        target = {"action": entry["action"], "params": entry.get("params") or {}}
        return target, entry.get("response") or {}
    for entry in recs.entries("streams"):
        pages = entry.get("pages") or [{}]
        target = {"stream": entry["stream"], "params": entry.get("params") or {}}
        return target, pages[0].get("response") or {}
    raise AssertionError("an auth check needs a target: record an action or a stream first.")


def check_auth(
    connector: type[Connector], recs: Recordings, entry: Mapping[str, Any], evidence: Evidence
) -> None:
    """One auth kind, given its credentials alone, is applied as documented (headers, query)."""
    if "target" in entry:
        target, answer = dict(entry["target"]), entry.get("response") or {"status": 200}
    else:
        target, answer = default_target(recs)
    client = make_client(
        connector,
        recs,
        secrets=entry.get("secrets") or {},
        config=entry.get("config"),
        token=str(entry["token"]) if entry.get("token") else None,
        default_token=False,
    )
    see(evidence, "the client", client)
    with Replay(recs) as replay:
        replay.add(*(entry.get("responses") or []), answer)
        result = call_target(client, target)
    see(evidence, f"the result of auth {entry.get('kind')}", result.value)
    expect = dict(entry.get("expect") or {})
    if not replay.sent:
        raise AssertionError(f"auth {entry.get('kind')}: no request was sent.")
    index = int(expect.pop("request", -1))
    what = f"auth {entry.get('kind')}"
    problems = _unserved(replay, what)
    _fail(problems + request_problems(replay.sent[index], expect, client.base_url, what))
    if _holds_without_credentials(
        connector, recs, entry, target, answer, expect, index, client.base_url
    ):
        raise AssertionError(
            f"{what}: a client holding no credentials sends a request the expectation accepts "
            "too; expect the header or query parameter that carries the credential."
        )


def _holds_without_credentials(
    connector: type[Connector],
    recs: Recordings,
    entry: Mapping[str, Any],
    target: Mapping[str, Any],
    answer: Mapping[str, Any],
    expect: Mapping[str, Any],
    index: int,
    base_url: str,
) -> bool:
    """True when the same request, sent by a client given no secret and no token, meets the
    auth expectation: it then says nothing about the credentials."""
    replay = Replay(recs)
    try:
        bare = make_client(
            connector, recs, secrets={}, config=entry.get("config"), token=None, default_token=False
        )
        with replay:
            replay.add(*(entry.get("responses") or []), answer)
            call_target(bare, target)
    except Exception:  # refusing to send without credentials is the point
        pass
    if not replay.sent or not -len(replay.sent) <= index < len(replay.sent):
        return False
    return not request_problems(replay.sent[index], expect, base_url, "")


def check_action(
    connector: type[Connector], recs: Recordings, entry: Mapping[str, Any], evidence: Evidence
) -> None:
    """One action builds the documented request and returns the documented result."""
    client = make_client(connector, recs, config=entry.get("config"))
    see(evidence, "the client", client)
    target = {
        "action": entry["action"],
        "params": entry.get("params") or {},
        "idempotency_key": entry.get("idempotency_key"),
    }
    with Replay(recs) as replay:
        replay.add(*(entry.get("responses") or []), entry.get("response") or {"status": 200})
        answer = call_target(client, target)
    see(evidence, f"the result of {entry['action']}", answer.value)
    problems = _unserved(replay, f"action {entry['action']}")
    if not replay.sent:
        problems.append(f"{entry['action']}: no request was sent")
    else:
        expected = entry.get("request") or {}
        # A secret URL's path is part of the secret: such a connector may leave it out.
        needed = ["method"] if "secret_url" in auth_kinds_of(connector) else ["method", "path"]
        problems += [
            f"action {entry['action']}: the recording documents no request {key}"
            for key in needed
            if key not in expected
        ]
        problems += request_problems(
            replay.sent[-1], complete(expected), client.base_url, f"action {entry['action']}"
        )
    if "result" in entry and answer.value != entry["result"]:
        problems.append(
            f"{entry['action']}: result is {answer.value!r}, expected {entry['result']!r}"
        )
    _fail(problems)


def check_error(
    connector: type[Connector], recs: Recordings, entry: Mapping[str, Any], evidence: Evidence
) -> None:
    """A documented error answer is classified as expected, with the documented wait."""
    expect = str(entry.get("expect"))
    if expect not in OUTCOMES:
        raise AssertionError(f"error {entry.get('name')}: expect must be one of {OUTCOMES}.")
    client = make_client(connector, recs, config=entry.get("config"))
    see(evidence, "the client", client)
    caught: ProviderError | None = None
    with Replay(recs) as replay:
        replay.add(*(entry.get("responses") or []), entry.get("response") or {})
        try:
            answer = call_target(client, entry.get("target") or {})
        except ProviderError as exc:
            caught = exc
            see(evidence, f"the error of {entry.get('name')!r}", exc)
        else:
            see(evidence, f"the result of {entry.get('name')!r}", answer.value)
    got = outcome_of(caught)
    problems = _unserved(replay, f"error {entry.get('name')!r}")
    if got != expect:
        problems.append(f"error {entry.get('name')!r} is classified {got}, expected {expect}")
    have = getattr(caught, "retry_after", None)
    if "wait" not in entry and have is not None:
        problems.append(
            f"error {entry.get('name')!r} waits {have} s, and the recording states no wait "
            "(say `wait:` with the provider's documented seconds)"
        )
    if "wait" in entry:
        wait = entry["wait"]
        if wait is None and have is not None:
            problems.append(f"error {entry.get('name')!r}: wait is {have}, expected none")
        elif wait is not None and (
            have is None or abs(float(have) - float(wait)) > _WAIT_TOLERANCE
        ):
            problems.append(f"error {entry.get('name')!r}: wait is {have}, expected {wait}")
    if "message" in entry and str(entry["message"]) not in str(caught):
        problems.append(
            f"error {entry.get('name')!r}: the message {str(caught)!r} does not say "
            f"{entry['message']!r}"
        )
    _fail(problems)


class _Learned:
    """A budget that keeps what the request path teaches it (``learn(key, pause=, rate=)``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def learn(self, key: str, **taught: Any) -> None:
        self.calls.append((key, taught))


def learned(
    client: Connector,
    budgets: tuple[Any, ...],
    response: Any,
    exc: RetriableError | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """What the fleet's request path (:meth:`GuardedRequest.learn`) teaches the budgets from
    ``response`` (a refusal ``exc`` pauses as a 429 does): ``[(budget key, {pause|rate})]``."""
    from spark_integrations.tasks.clients import LEARNED
    from spark_integrations.tasks.request import GuardedRequest

    guard = GuardedRequest.__new__(GuardedRequest)
    guard.target = SimpleNamespace(client=client, connector=type(client))  # type: ignore[assignment]
    budget = _Learned()
    guard.budget = budget  # type: ignore[assignment]
    LEARNED.seen.clear()  # a rate taught by an earlier test is taught again here
    guard.learn(budgets, response, pause=isinstance(exc, RateLimitedError), exc=exc)
    return budget.calls


def _learning_problems(
    calls: list[tuple[str, dict[str, Any]]], key: str, hint: Any, expect: Mapping[str, Any]
) -> list[str]:
    taught: dict[str, Any] = {}
    for called, values in calls:
        if called == key:
            taught.update(values)
    problems = []
    spent = hint.remaining is not None and hint.remaining <= 0 and hint.reset_in
    if spent and "pause" not in taught:
        problems.append(f"the window is spent, yet the budget {key} is not paused")
    for field in ("pause", "rate"):
        if field not in expect:
            continue
        want, have = expect[field], taught.get(field)
        if want is None:
            if have is not None:
                problems.append(f"the budget {key} learns {field} {have}, expected none")
        elif have is None or abs(float(have) - float(want)) > _WAIT_TOLERANCE:
            problems.append(f"the budget {key} learns {field} {have}, expected {want}")
    return problems


def check_rate_limit(
    connector: type[Connector], recs: Recordings, entry: Mapping[str, Any], evidence: Evidence
) -> None:
    """An answer's rate-limit headers give the documented hint and feed the right budget: the
    fleet's request path pauses it when the window is spent, and learns the pause or the rate
    the recording expects (``pause``, ``rate``). A refusal (a 429) may be the answer too."""
    client = make_client(connector, recs, config=entry.get("config"))
    see(evidence, "the client", client)
    target = entry.get("target") or default_target(recs)[0]
    refusal: RetriableError | None = None
    with Replay(recs) as replay:
        replay.add(*(entry.get("responses") or []), entry.get("response") or {})
        try:
            answer = call_target(client, target)
        except RetriableError as exc:
            see(evidence, "a rate-limited answer's error", exc)
            refusal = exc
            response = exc.response
        else:
            see(evidence, "a rate-limited answer's result", answer.value)
            response = answer.response
    if response is None:
        raise AssertionError("the refusal kept no answer to read rate-limit headers from.")
    hint = client.rate_limit_hint(response)
    expect = dict(entry.get("expect") or {})
    budget_key = expect.pop("budget", None)
    learning = {k: expect.pop(k) for k in ("pause", "rate") if k in expect}
    problems = _unserved(replay, f"rate limit {entry.get('name')!r}")
    for field, want in expect.items():
        if not hasattr(hint, field):
            problems.append(f"the rate-limit hint has no {field} ({hint!r})")
            continue
        have = getattr(hint, field)
        if isinstance(want, int | float) and not isinstance(want, bool):
            tolerance = _WAIT_TOLERANCE if field in ("reset_in", "retry_after") else 1e-9
            if have is None or abs(float(have) - float(want)) > tolerance:
                problems.append(f"rate-limit {field} is {have!r}, expected {want!r}")
        elif have != want and str(have) != str(want):
            problems.append(f"rate-limit {field} is {have!r}, expected {want!r}")
    operation = (
        client.get_action(target["action"])
        if "action" in target
        else client.get_stream(target["stream"])
    )
    budgets = client.budgets(operation)
    chosen = client.learning_budget(budgets, response)
    if chosen is None:
        problems.append("no budget learns from the answer's headers (learning_budget gave None)")
    else:
        if budget_key is not None:
            want_key = str(budget_key).format(scope=SCOPE, name=connector.name)
            if chosen.key != want_key:
                problems.append(f"the budget learning is {chosen.key!r}, expected {want_key!r}")
        bucket = expect.get("bucket")
        if bucket is not None and str(bucket) not in chosen.key:
            problems.append(
                f"the budget learning is {chosen.key!r}, which is not the bucket {bucket!r}"
            )
        calls = learned(client, budgets, response, refusal)
        problems += _learning_problems(calls, chosen.key, hint, learning)
    _fail(problems)


def skip_unless(condition: bool, reason: str) -> None:
    """Skip the current test with ``reason`` unless ``condition`` holds."""
    if not condition:
        pytest.skip(reason)
