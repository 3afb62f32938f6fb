"""The contract's rate-limit check: an answer's headers give the documented hint, feed the
right budget, and teach it what the fleet's request path learns from them (a pause, a rate)."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from spark_integrations.connectors.base import Connector
from spark_integrations.errors import RateLimitedError, RetriableError
from spark_integrations.testing.checks import (
    WAIT_TOLERANCE,
    Evidence,
    default_target,
    fail,
    see,
    unserved,
)
from spark_integrations.testing.recordings import Recordings
from spark_integrations.testing.replay import SCOPE, Replay, call_target, make_client

__all__ = ["check_rate_limit", "learned"]


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
    calls: list[tuple[str, dict[str, Any]]],
    key: str,
    hint: Any,
    expect: Mapping[str, Any],
    pauses: bool = True,
) -> list[str]:
    taught: dict[str, Any] = {}
    for called, values in calls:
        if called == key:
            taught.update(values)
    problems = []
    spent = pauses and hint.remaining is not None and hint.remaining <= 0 and hint.reset_in
    if spent and "pause" not in taught:
        problems.append(f"the window is spent, yet the budget {key} is not paused")
    for field in ("pause", "rate"):
        if field not in expect:
            continue
        want, have = expect[field], taught.get(field)
        if want is None:
            if have is not None:
                problems.append(f"the budget {key} learns {field} {have}, expected none")
        elif have is None or abs(float(have) - float(want)) > WAIT_TOLERANCE:
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
    problems = unserved(replay, f"rate limit {entry.get('name')!r}")
    for field, want in expect.items():
        if not hasattr(hint, field):
            problems.append(f"the rate-limit hint has no {field} ({hint!r})")
            continue
        have = getattr(hint, field)
        if isinstance(want, int | float) and not isinstance(want, bool):
            tolerance = WAIT_TOLERANCE if field in ("reset_in", "retry_after") else 1e-9
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
        problems += _learning_problems(
            calls, chosen.key, hint, learning, pauses=connector.pause_when_spent
        )
    fail(problems)
