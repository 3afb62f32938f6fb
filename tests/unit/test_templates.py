"""Record templates (``--with NAME=TEMPLATE``): placeholders of a record's fields, literal
braces, values that are not text, and the refusals of a malformed template."""

from __future__ import annotations

import pytest

from spark_integrations.destinations.templates import (
    MAX_RENDERED,
    check_template,
    compact_json,
    fields_of,
    render,
)
from spark_integrations.errors import SkippableError, UsageError

RECORD = {
    "id": 7,
    "title": "Crash on start",
    "user": {"login": "ana", "site_admin": False},
    "labels": ["bug", {"name": "ui"}],
    "closed_at": None,
    "score": 1.5,
    "body": "a {brace} and ünïcode",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{title}: {id}", "Crash on start: 7"),
        ("{user.login}", "ana"),
        ("{labels.0} {labels.1.name}", "bug ui"),
        ("{{literal}} {id}", "{literal} 7"),
        ("}}{{", "}{"),
        ("no placeholders", "no placeholders"),
        ("", ""),
        ("{user.site_admin} {closed_at} {score}", "false null 1.5"),
        ("{labels}", '["bug",{"name":"ui"}]'),
        ("{user}", '{"login":"ana","site_admin":false}'),
        ("{body}", "a {brace} and ünïcode"),  # a value's braces are data, not placeholders
    ],
)
def test_render(template: str, expected: str) -> None:
    assert check_template(template) == template
    assert render(template, RECORD) == expected


@pytest.mark.parametrize(
    ("template", "missing"),
    [
        ("{nope}", "nope"),
        ("{user.email}", "user.email"),
        ("{labels.5}", "labels.5"),
        ("{labels.x}", "labels.x"),  # a list is indexed by number only
        ("{title.0}", "title.0"),  # text has no fields
        ("{closed_at.x}", "closed_at.x"),
    ],
)
def test_a_missing_field_skips_the_record(template: str, missing: str) -> None:
    with pytest.raises(SkippableError, match=rf"no field '{missing}'"):
        render(template, RECORD)


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{title", "malformed (expected '}' before end of string)"),
        ("title}", "malformed (Single '}'"),
        ("{ {title}", "malformed"),
        ("{}", "is not a field name"),
        ("{a..b}", "is not a field name"),
        ("{ title }", "is not a field name"),
        ("{title:>10}", "format spec or conversion"),
        ("{title!r}", "format spec or conversion"),
    ],
)
def test_a_malformed_template_is_refused_in_one_sentence(template: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_template(template)
    text = str(caught.value)
    assert words in text and "\n" not in text and text.endswith(".")
    with pytest.raises(UsageError):
        render(template, RECORD)


def test_a_template_must_be_text() -> None:
    with pytest.raises(UsageError, match="must be text, not int"):
        check_template(3)  # type: ignore[arg-type]


def test_fields_of_and_compact_json() -> None:
    assert fields_of("{title} by {user.login} ({labels.0}) {{x}}") == [
        "title",
        "user.login",
        "labels.0",
    ]
    assert compact_json({"b": 1, "a": [1, "x"]}) == '{"a":[1,"x"],"b":1}'


@pytest.mark.parametrize("index", ["\u00b2", "\u0661", "0x1", "+1", "9" * 5000])
def test_a_list_is_indexed_by_ascii_digits_only(index: str) -> None:
    # "²" is a digit to str.isdigit but not to int(): a missing field, never a ValueError
    # escaping into the sync run.
    template = "{labels." + index + "}"
    assert check_template(template) == template
    with pytest.raises(SkippableError, match="no field"):
        render(template, RECORD)


def test_a_template_reaches_no_attribute_of_a_value() -> None:
    for template in ("{title.__class__}", "{user.__class__.__name__}", "{labels.__len__}"):
        with pytest.raises(SkippableError, match="no field"):
            render(template, RECORD)


def test_text_longer_than_the_limit_skips_the_record() -> None:
    big = {"blob": "x" * (MAX_RENDERED // 4 + 1)}
    assert len(render("{blob}" * 3, big)) == 3 * len(big["blob"])
    with pytest.raises(SkippableError, match="longer than 1,000,000 characters"):
        render("{blob}" * 4, big)
    # A template naming a large value thousands of times stops at the limit, not after.
    with pytest.raises(SkippableError, match="longer than"):
        render("{blob}" * 5000, big)
