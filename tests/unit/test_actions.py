"""connectors.actions.Action: validation of a call's params and filling of its URL path."""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType
from typing import Any

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
    action = Action("get", "GET", "/v1/messages/{id}")
    path, rest = action.url_path({"id": "a/b c?d#e&f=%g"})
    assert path == "/v1/messages/a%2Fb%20c%3Fd%23e%26f%3D%25g"
    assert rest == {}


def test_url_path_quotes_non_ascii_as_utf8() -> None:
    path, _ = Action("get", "GET", "/v1/m/{id}").url_path({"id": "café"})
    assert path == "/v1/m/caf%C3%A9"


def test_url_path_formats_non_string_values() -> None:
    path, rest = Action("get", "GET", "/v1/m/{id}/{n}").url_path({"id": 42, "n": True})
    assert path == "/v1/m/42/True"
    assert rest == {}


def test_url_path_fills_a_repeated_placeholder_everywhere() -> None:
    path, _ = Action("x", "GET", "/a/{id}/b/{id}").url_path({"id": "z"})
    assert path == "/a/z/b/z"


def test_url_path_leaves_unfilled_placeholders() -> None:
    path, rest = Action("x", "GET", "/a/{id}/{other}").url_path({"id": "z", "q": 1})
    assert path == "/a/z/{other}"
    assert rest == {"q": 1}


def test_url_path_value_cannot_inject_another_placeholder() -> None:
    action = Action("x", "GET", "/a/{first}/{second}")
    path, rest = action.url_path({"first": "{second}", "second": "s"})
    assert path == "/a/%7Bsecond%7D/s"
    assert rest == {}


def test_url_path_without_placeholders_keeps_every_param() -> None:
    path, rest = Action("x", "POST", "/v1/messages").url_path({"text": "hi"})
    assert path == "/v1/messages"
    assert rest == {"text": "hi"}
