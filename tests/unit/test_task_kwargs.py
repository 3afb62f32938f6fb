"""tasks.kwargs: ids and idempotency keys a task accepts, over 1,000 generated values each."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_integrations.errors import UsageError
from spark_integrations.tasks.kwargs import (
    MAX_KEY_LENGTH,
    check_id,
    check_idempotency_key,
    forward_key,
)

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)
ANYTHING = st.one_of(
    ANY_TEXT,
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.text(min_size=190, max_size=400),
)


@pytest.mark.parametrize(
    "value", ["", "a\x00b", "\ud800", "x" * 201, "tab\there", 7, None, ["c"], "new\nline"]
)
def test_ids_refused(value: Any) -> None:
    with pytest.raises(UsageError) as info:
        check_id("connection_id", value)
    assert str(info.value) == (
        "connection_id must be a non-empty string of at most 200 printable characters."
    )


@pytest.mark.parametrize("value", ["5f0c-uuid", "café", "x" * 200, "with space", "ユニコード"])
def test_ids_accepted(value: str) -> None:
    assert check_id("sync_id", value) == value


@pytest.mark.parametrize(
    "value", ["", " lead", "trail ", "a\nb", "caf\u00e9", "\ud800", "k" * 256, 5, b"k"]
)
def test_idempotency_keys_refused(value: Any) -> None:
    with pytest.raises(UsageError, match="idempotency_key must be a string of 1 to 255"):
        check_idempotency_key(value)


def test_forward_key_hashes_a_task_id_a_header_cannot_carry() -> None:
    assert forward_key("mine", "t") == "mine"
    assert forward_key(None, "abc-123") == "spark-int-abc-123"
    odd = forward_key(None, "t\u00e9\nx")
    assert odd.startswith("spark-int-") and len(odd) == len("spark-int-") + 64
    assert forward_key(None, "t\u00e9\nx") == odd  # stable across retries


@settings(max_examples=1000, deadline=None)
@given(value=ANYTHING)
def test_an_accepted_id_is_storable_text(value: Any) -> None:
    try:
        checked = check_id("connection_id", value)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    checked.encode("utf-8")
    assert "\x00" not in checked and 0 < len(checked) <= 200


@settings(max_examples=1000, deadline=None)
@given(key=ANYTHING, task_id=ANY_TEXT.filter(bool))
def test_every_forwarded_key_travels_in_a_header(key: Any, task_id: str) -> None:
    """Whatever key or task id a caller chose, what is forwarded is a valid header value."""
    try:
        checked = check_idempotency_key(key)
    except UsageError:
        checked = None
    sent = forward_key(checked, task_id)
    assert 0 < len(sent) <= MAX_KEY_LENGTH
    prepared = requests.Request(
        "POST", "https://api.example.com/x", headers={"Idempotency-Key": sent}
    ).prepare()
    assert prepared.headers["Idempotency-Key"] == sent
    sent.encode("ascii")
