"""Properties of actions over generated input: a param never changes the endpoint, and any value
is either sent as given or refused at once with one sentence (hypothesis, 1,000 cases each)."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_integrations.connectors.actions import Action, sendable_problem
from spark_integrations.errors import UsageError

BASE = "https://api.example.com/base"
ACTIONS = (
    Action("get_one", "GET", "/v1/things/{id}", params={"id": (str, int)}, optional={"q": str}),
    Action(
        "nested",
        "DELETE",
        "/v1/users/{user}/items/{item}",
        params={"user": str, "item": (str, int)},
        optional={"expand": (str, list), "limit": int},
    ),
    Action(
        "create",
        "POST",
        "/v1/things/{kind}/new",
        params={"kind": str, "text": str},
        optional={"meta": dict, "ratio": float, "tags": list, "flag": bool},
    ),
    Action("patch", "PATCH", "/v1/x/{a}/{b}", params={"a": str, "b": str, "body": (dict, list)}),
)

# Every character, lone surrogates and control characters included.
ANY_CHAR = st.characters(exclude_categories=())
# Pieces an attacker would put in a path segment to leave it.
NASTY = st.sampled_from(
    [".", "..", "/", "\\", "%2e", "%2E%2e", "%2f", "%5c", "?", "#", "@", ":", "//evil.example",
     "http://evil.example/", "{id}", "\r\n", "\x00", " ", "%", "~", ";", "\ud800"]
)  # fmt: skip
SEGMENT = st.one_of(
    st.text(ANY_CHAR, max_size=12),
    st.lists(st.one_of(NASTY, st.text(ANY_CHAR, max_size=3)), max_size=6).map("".join),
    st.integers(),
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ANY_CHAR, max_size=10),
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(ANY_CHAR, max_size=6), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)
NAMES = st.one_of(
    st.sampled_from(["id", "q", "user", "item", "expand", "limit", "kind", "text", "meta"]),
    st.sampled_from(["ratio", "tags", "flag", "a", "b", "body"]),
    st.text(ANY_CHAR, max_size=8),
)
PARAMS = st.dictionaries(NAMES, st.one_of(SEGMENT, VALUE), max_size=7)
_BY_TYPE: dict[type, st.SearchStrategy[Any]] = {
    str: st.one_of(SEGMENT.filter(lambda v: isinstance(v, str)), st.text(max_size=10)),
    int: st.integers(min_value=-(2**70), max_value=2**70),
    float: st.floats(allow_nan=True, allow_infinity=True),
    bool: st.booleans(),
    list: st.lists(VALUE, max_size=3),
    dict: st.dictionaries(st.text(ANY_CHAR, max_size=5), VALUE, max_size=3),
}


@st.composite
def fitting_params(draw: st.DrawFn, action: Action) -> dict[str, Any]:
    """Params shaped like the action's: every required one (of a declared type, mostly), some
    optional ones, now and then a stranger or a value of another type."""
    declared = {**action.params, **action.optional}
    params: dict[str, Any] = {}
    for key, kind in declared.items():
        if key in action.optional and draw(st.booleans()):
            continue
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if draw(st.integers(0, 9)) == 0:
            params[key] = draw(VALUE)
        else:
            params[key] = draw(st.one_of(*(_BY_TYPE[k] for k in kinds)))
    if draw(st.integers(0, 9)) == 0:
        params[draw(NAMES)] = draw(VALUE)
    return params


ACTION_AND_PARAMS = st.one_of(
    st.sampled_from(ACTIONS).flatmap(lambda a: st.tuples(st.just(a), fitting_params(a))),
    st.tuples(st.sampled_from(ACTIONS), PARAMS),
)


def _fixed_prefix(action: Action) -> str:
    return action.path.split("{", 1)[0]


@settings(max_examples=1000, deadline=None)
@given(case=ACTION_AND_PARAMS)
def test_a_param_never_changes_the_endpoint(case: tuple[Action, dict[str, Any]]) -> None:
    """Whatever the params: validation accepts or refuses in one sentence; what it accepts
    builds a request to the same host, method and number of path segments as declared."""
    action, params = case
    try:
        checked = action.validate(params)
    except UsageError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 300
        return
    path, rest = action.url_path(checked)
    body: dict[str, Any] = (
        {"params": rest} if action.method in ("GET", "HEAD", "DELETE") else {"json": rest}
    )
    prepared = requests.Request(action.method, BASE + path, **body).prepare()
    assert prepared.method == action.method
    sent = urlsplit(prepared.url or "")
    assert (sent.scheme, sent.netloc) == ("https", "api.example.com")
    assert sent.path.startswith("/base" + _fixed_prefix(action))
    assert sent.path.count("/") == ("/base" + action.path.split("?")[0]).count("/")
    for segment in sent.path.split("/"):
        assert unquote(segment) not in (".", "..")
    assert not sent.fragment
    for key in action.placeholders:
        assert key not in rest


@settings(max_examples=1000, deadline=None)
@given(value=VALUE)
def test_a_value_is_sendable_exactly_when_json_carries_it(value: Any) -> None:
    """``sendable_problem`` agrees with a strict JSON encoder and UTF-8."""
    problem = sendable_problem(value)
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
        encoded.encode("utf-8")
        strict_ok = True
    except (ValueError, TypeError):
        strict_ok = False
    if problem is None:
        assert strict_ok
    else:
        assert "\n" not in problem
        assert not strict_ok or _has_non_string_key(value)


def _has_non_string_key(value: Any) -> bool:
    """json.dumps turns int keys into strings silently; the fleet refuses them instead."""
    if isinstance(value, dict):
        return any(not isinstance(k, str) or _has_non_string_key(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_non_string_key(v) for v in value)
    return False


@settings(max_examples=1000, deadline=None)
@given(
    number=st.floats(allow_nan=True, allow_infinity=True),
    where=st.sampled_from(["top", "list", "object"]),
)
def test_non_finite_numbers_are_refused_wherever_they_are(number: float, where: str) -> None:
    action = ACTIONS[2]
    value: Any = {"top": number, "list": [number], "object": {"k": number}}[where]
    params = {"kind": "k", "text": "t", "ratio" if where == "top" else "meta": value}
    if where == "list":
        params = {"kind": "k", "text": "t", "tags": [number]}
    if math.isfinite(number):
        assert action.validate(params) == params
    else:
        try:
            action.validate(params)
        except UsageError as exc:
            assert "is not a finite number, so it cannot be sent." in str(exc)
        else:
            raise AssertionError("a non-finite number was accepted")
