"""connectors.actions.Action: validation of a call's params and filling of its URL path."""

from __future__ import annotations

import re
from collections import OrderedDict
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import pytest

from spark_integrations.connectors.actions import Action
from spark_integrations.errors import UsageError

SEND = Action(
    "send_thing",
    "POST",
    "/v1/things",
    params={"text": str, "count": int},
    optional={
        "ratio": float,
        "urgent": bool,
        "tags": list,
        "meta": dict,
        "note": (str, type(None)),
    },
)
NO_PARAMS = Action("ping", "GET", "/v1/ping")


# --- validate ---------------------------------------------------------------------------------


def test_none_is_no_params() -> None:
    assert NO_PARAMS.validate(None) == {}
    assert Action("opt", "GET", "/x", optional={"q": str}).validate(None) == {}


def test_valid_params_come_back_as_a_new_dict() -> None:
    given = {"text": "hi", "count": 2}
    checked = SEND.validate(given)
    assert checked == given
    assert type(checked) is dict
    assert checked is not given
    checked["extra"] = 1
    assert "extra" not in given


def test_any_mapping_is_accepted() -> None:
    proxy = MappingProxyType({"text": "hi", "count": 1})
    assert SEND.validate(proxy) == {"text": "hi", "count": 1}
    assert SEND.validate(OrderedDict(text="a", count=0)) == {"text": "a", "count": 0}


@pytest.mark.parametrize("params", [[], ["text", "hi"], "text=hi", 3, (("text", "hi"),), b"{}"])
def test_non_mapping_is_refused(params: Any) -> None:
    with pytest.raises(UsageError) as info:
        SEND.validate(params)
    assert str(info.value) == "params of send_thing must be a JSON object."


def test_missing_required_param_is_named_with_its_type() -> None:
    with pytest.raises(UsageError) as info:
        SEND.validate({"text": "hi"})
    assert str(info.value) == "send_thing needs the param 'count' (an integer)."


def test_empty_params_name_the_first_required_one() -> None:
    with pytest.raises(UsageError) as info:
        SEND.validate({})
    assert "needs the param 'text' (a string)" in str(info.value)


def test_none_with_required_params_is_refused() -> None:
    with pytest.raises(UsageError, match="needs the param 'text'"):
        SEND.validate(None)


def test_unknown_param_lists_the_known_ones() -> None:
    with pytest.raises(UsageError) as info:
        SEND.validate({"text": "hi", "count": 1, "colour": "red"})
    assert str(info.value) == (
        "send_thing takes no param 'colour'; it takes text, count, ratio, urgent, tags, meta, note."
    )


def test_unknown_param_of_an_action_without_params() -> None:
    with pytest.raises(UsageError) as info:
        NO_PARAMS.validate({"x": 1})
    assert str(info.value) == "ping takes no param 'x'; it takes none."


@pytest.mark.parametrize(
    ("params", "key", "described"),
    [
        ({"text": 5, "count": 1}, "text", "a string"),
        ({"text": None, "count": 1}, "text", "a string"),
        ({"text": "hi", "count": "1"}, "count", "an integer"),
        ({"text": "hi", "count": 1.0}, "count", "an integer"),
        ({"text": "hi", "count": True}, "count", "an integer"),
        ({"text": "hi", "count": False}, "count", "an integer"),
        ({"text": "hi", "count": 1, "ratio": "0.5"}, "ratio", "a number"),
        ({"text": "hi", "count": 1, "ratio": True}, "ratio", "a number"),
        ({"text": "hi", "count": 1, "urgent": 1}, "urgent", "true or false"),
        ({"text": "hi", "count": 1, "urgent": "yes"}, "urgent", "true or false"),
        ({"text": "hi", "count": 1, "tags": ("a",)}, "tags", "a list"),
        ({"text": "hi", "count": 1, "meta": []}, "meta", "an object"),
        ({"text": "hi", "count": 1, "note": 3}, "note", "a string or null"),
    ],
)
def test_wrong_types_are_refused(params: dict[str, Any], key: str, described: str) -> None:
    with pytest.raises(UsageError) as info:
        SEND.validate(params)
    assert str(info.value) == f"param {key!r} of send_thing must be {described}."


@pytest.mark.parametrize("value", [0, 3, -7, 2**70])
def test_int_is_accepted_for_float(value: int) -> None:
    checked = SEND.validate({"text": "t", "count": 1, "ratio": value})
    assert checked["ratio"] == value


def test_float_is_accepted_for_float() -> None:
    assert SEND.validate({"text": "t", "count": 1, "ratio": 0.25})["ratio"] == 0.25


def test_bool_is_accepted_where_bool_is_expected() -> None:
    assert SEND.validate({"text": "t", "count": 1, "urgent": False})["urgent"] is False


def test_bool_accepted_when_listed_beside_int() -> None:
    either = Action("a", "POST", "/a", params={"v": (int, bool)})
    assert either.validate({"v": True}) == {"v": True}
    assert either.validate({"v": 4}) == {"v": 4}


def test_optional_params_are_accepted_and_may_be_left_out() -> None:
    full = {
        "text": "t",
        "count": 1,
        "ratio": 1.5,
        "urgent": True,
        "tags": ["a", "b"],
        "meta": {"k": "v"},
        "note": None,
    }
    assert SEND.validate(full) == full
    assert SEND.validate({"text": "t", "count": 1}) == {"text": "t", "count": 1}


def test_union_type_description_in_missing_message() -> None:
    action = Action("a", "POST", "/a", params={"id": (str, int)})
    with pytest.raises(UsageError) as info:
        action.validate({})
    assert str(info.value) == "a needs the param 'id' (a string or an integer)."


def test_unnamed_type_is_described_by_its_class_name() -> None:
    action = Action("a", "POST", "/a", params={"raw": bytes})
    with pytest.raises(UsageError) as info:
        action.validate({"raw": "text"})
    assert str(info.value) == "param 'raw' of a must be bytes."


def test_action_is_frozen() -> None:
    with pytest.raises(AttributeError):
        SEND.name = "other"  # type: ignore[misc]


# --- url_path ---------------------------------------------------------------------------------


def test_url_path_fills_placeholders_and_leaves_the_rest() -> None:
    action = Action("get", "GET", "/v1/users/{user}/items/{id}", params={"user": str, "id": str})
    params = {"user": "u1", "id": "i9", "expand": "all", "limit": 5}
    path, rest = action.url_path(params)
    assert path == "/v1/users/u1/items/i9"
    assert rest == {"expand": "all", "limit": 5}
    assert params == {"user": "u1", "id": "i9", "expand": "all", "limit": 5}


def test_url_path_quotes_every_reserved_character() -> None:
    action = Action("get", "GET", "/v1/messages/{id}", params={"id": str})
    path, rest = action.url_path({"id": "a/b c?d#e&f=%g"})
    assert path == "/v1/messages/a%2Fb%20c%3Fd%23e%26f%3D%25g"
    assert rest == {}


def test_url_path_quotes_non_ascii_as_utf8() -> None:
    path, _ = Action("get", "GET", "/v1/m/{id}", params={"id": str}).url_path({"id": "café"})
    assert path == "/v1/m/caf%C3%A9"


def test_url_path_formats_integers_and_refuses_other_types() -> None:
    action = Action("get", "GET", "/v1/m/{id}/{n}", params={"id": (str, int), "n": int})
    path, rest = action.url_path({"id": 42, "n": 7})
    assert path == "/v1/m/42/7"
    assert rest == {}
    for bad in (True, 1.5, None, [], {}):
        with pytest.raises(UsageError, match="must be a string or an integer"):
            action.url_path({"id": bad, "n": 1})


def test_url_path_fills_a_repeated_placeholder_everywhere() -> None:
    path, _ = Action("x", "GET", "/a/{id}/b/{id}", params={"id": str}).url_path({"id": "z"})
    assert path == "/a/z/b/z"


def test_url_path_refuses_a_missing_placeholder() -> None:
    action = Action("x", "GET", "/a/{id}/{other}", params={"id": str, "other": str})
    with pytest.raises(UsageError, match="needs the param 'other' for its path"):
        action.url_path({"id": "z", "q": 1})


def test_url_path_value_cannot_inject_another_placeholder() -> None:
    action = Action("x", "GET", "/a/{first}/{second}", params={"first": str, "second": str})
    path, rest = action.url_path({"first": "{second}", "second": "s"})
    assert path == "/a/%7Bsecond%7D/s"
    assert rest == {}


def test_url_path_without_placeholders_keeps_every_param() -> None:
    path, rest = Action("x", "POST", "/v1/messages").url_path({"text": "hi"})
    assert path == "/v1/messages"
    assert rest == {"text": "hi"}


GET_ONE = Action("get", "GET", "/v1/messages/{id}", params={"id": str})


@pytest.mark.parametrize(
    "value", ["", ".", "..", "../admin", "a/../b", "a/./b", "..\\x", "%2e%2e", "%2E%2e/x", "x/.."]
)
def test_placeholders_refuse_empty_values_and_dot_segments(value: str) -> None:
    with pytest.raises(UsageError, match="param 'id' of get must not"):
        GET_ONE.validate({"id": value})


@pytest.mark.parametrize("value", ["...", ".x", "x.", "a.b", "a/b", "%2ex", "...."])
def test_dots_inside_a_segment_are_kept(value: str) -> None:
    path, _ = GET_ONE.url_path({"id": value})
    assert path == "/v1/messages/" + quote(value, safe="")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "get"}, "is not one of"),
        ({"method": "CONNECT"}, "is not one of"),
        ({"path": "v1/x"}, "must start with one '/'"),
        ({"path": "//evil.example/x"}, "must start with one '/'"),
        ({"path": "https://evil.example/x"}, "must start with one '/'"),
        ({"path": "/x/{id}", "params": {}}, "placeholder {id} must be a required param"),
        ({"path": "/x/{id}", "optional": {"id": str}}, "must be a required param"),
        ({"path": "/x?q={id}", "params": {"id": str}}, "is not in the path"),
        ({"path": "/x/{id}", "params": {"id": dict}}, "must take a string or an integer"),
        ({"path": "/x/{id}", "params": {"id": (str, bool)}}, "must take a string or an integer"),
    ],
)
def test_unsound_declarations_are_refused(kwargs: dict[str, Any], message: str) -> None:
    spec: dict[str, Any] = {"name": "a", "method": "GET", "path": "/x", **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        Action(**spec)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "is not a finite number"),
        (float("inf"), "is not a finite number"),
        (-float("inf"), "is not a finite number"),
        ({"deep": [1.0, float("nan")]}, "is not a finite number"),
        ("\ud800", "holds text that is not valid Unicode"),
        (["ok", {"k": "\udfff"}], "holds text that is not valid Unicode"),
        ({"\ud800": 1}, "holds a key that is not valid text"),
        ({1: "x"}, "holds a key that is not valid text"),
        (b"raw", "holds a bytes, which JSON cannot carry"),
        ({"s": {1, 2}}, "holds a set, which JSON cannot carry"),
    ],
)
def test_values_that_cannot_be_sent_are_refused(value: Any, problem: str) -> None:
    action = Action("a", "POST", "/a", optional={"v": (float, str, list, dict, bytes)})
    with pytest.raises(UsageError) as info:
        action.validate({"v": value})
    assert str(info.value) == f"param 'v' of a {problem}, so it cannot be sent."


def test_an_integer_json_cannot_write_is_refused() -> None:
    action = Action("a", "POST", "/a", optional={"v": int})
    with pytest.raises(UsageError, match="cannot be written as JSON"):
        action.validate({"v": 10**5000})


def test_a_long_unknown_name_is_cut_in_the_message() -> None:
    with pytest.raises(UsageError) as info:
        NO_PARAMS.validate({"x" * 10_000: 1})
    assert len(str(info.value)) < 200
