"""The contract's checks of one recording each: auth, actions and errors (rate-limit headers:
:mod:`spark_integrations.testing.limits`).

Each check builds a client from the recordings, serves the recorded answers (:class:`Replay`),
raises ``AssertionError`` listing every difference it finds, and appends what a reader could
see (results, exception texts) to ``evidence`` for the no-secret checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from spark_integrations.testing.replay import Replay, call_target, make_client

__all__ = [
    "OUTCOMES",
    "WAIT_TOLERANCE",
    "Evidence",
    "check_action",
    "check_auth",
    "check_error",
    "default_target",
    "fail",
    "outcome_of",
    "see",
    "unserved",
]

#: What an error recording may expect.
OUTCOMES = ("ok", "retry", "rate_limited", "reauth", "fatal", "unknown")
Evidence = list[tuple[str, str]]
# Waits are compared to the second: a reset given as an epoch time moves with the clock.
WAIT_TOLERANCE = 1.0


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


def unserved(replay: Replay, what: str) -> list[str]:
    """A recorded answer left unserved was never judged: the connector stopped short of it."""
    if not replay.queue:
        return []
    return [
        f"{what}: {len(replay.queue)} recorded answer(s) never asked for (the connector sent "
        f"{len(replay.sent)} request(s) and stopped short of them)"
    ]


def fail(problems: list[str]) -> None:
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
    problems = unserved(replay, what)
    fail(problems + request_problems(replay.sent[index], expect, client.base_url, what))
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
    problems = unserved(replay, f"action {entry['action']}")
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
    fail(problems)


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
    problems = unserved(replay, f"error {entry.get('name')!r}")
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
        elif wait is not None and (have is None or abs(float(have) - float(wait)) > WAIT_TOLERANCE):
            problems.append(f"error {entry.get('name')!r}: wait is {have}, expected {wait}")
    if "message" in entry and str(entry["message"]) not in str(caught):
        problems.append(
            f"error {entry.get('name')!r}: the message {str(caught)!r} does not say "
            f"{entry['message']!r}"
        )
    fail(problems)
