"""Stream parameters and orders (connectors/streams.py): declared, validated in one sentence,
filling path placeholders (escaped like an action's) or sent as query on every page."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import responses

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.streams import Param, Stream, below
from spark_integrations.errors import UsageError

BASE = "https://api.example.test"


class Chat(Connector):
    name = "chat"
    streams: ClassVar[tuple[Stream, ...]] = (
        Stream(
            "messages",
            "/channels/{channel}/messages",
            primary_key="id",
            replication_key="ts",
            since_param="oldest",
            params={"inclusive": "true"},
            parameters=(
                Param("channel", required=True),
                Param("limit_days", type="integer"),
                Param("threads", type="boolean"),
                Param("kinds", type="array"),
                Param("filter", type="object"),
                Param("ratio", type="number"),
            ),
            order="newest_first",
        ),
        Stream("deltas", "/delta", primary_key="id", order="delta"),
    )


def messages() -> Stream:
    return Chat.get_stream("messages")


def test_text_values_are_read_as_their_declared_types() -> None:
    checked = messages().validate_params(
        {
            "channel": "C1",
            "limit_days": "30",
            "threads": "false",
            "kinds": '["a", "b"]',
            "filter": '{"x": 1}',
            "ratio": "0.5",
        }
    )
    assert checked == {
        "channel": "C1",
        "limit_days": 30,
        "threads": False,
        "kinds": ["a", "b"],
        "filter": {"x": 1},
        "ratio": 0.5,
    }
    # Values already typed (a JSON API, not the command line) are taken as they are.
    assert messages().validate_params({"channel": "C1", "limit_days": 7}) == {
        "channel": "C1",
        "limit_days": 7,
    }


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({}, "needs the param 'channel' (a string): give it with --param channel=VALUE"),
        ({"channel": "C1", "nope": "1"}, "takes no param 'nope'; it takes channel, limit_days"),
        ({"channel": "C1", "limit_days": "3.5"}, "'limit_days' of stream messages must be an int"),
        ({"channel": "C1", "limit_days": True}, "must be an integer"),
        ({"channel": "C1", "threads": "perhaps"}, "must be true or false"),
        ({"channel": "C1", "kinds": "[1,"}, "must be a JSON list"),
        ({"channel": "C1", "kinds": "{}"}, "must be a JSON list"),
        ({"channel": "C1", "ratio": "nan"}, "must be a number"),
        ({"channel": ""}, "must not be empty"),
        ({"channel": ".."}, "must not be '.' or '..'"),
        ({"channel": "a/../b"}, "must not be '.' or '..'"),
        ({"channel": 5}, "'channel' of stream messages must be a string"),
        ("channel=C1", "must be a JSON object"),
    ],
)
def test_bad_params_are_one_sentence(params: Any, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        messages().validate_params(params)
    message = str(caught.value)
    assert words in message
    assert message.count(". ") == 0 and "\n" not in message


def test_a_stream_without_parameters_refuses_any() -> None:
    with pytest.raises(UsageError, match="takes no param 'x'; it takes none"):
        Chat.get_stream("deltas").validate_params({"x": "1"})
    assert Chat.get_stream("deltas").validate_params(None) == {}


def test_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="order 'sideways' is not one of"):
        Stream("s", "/s", primary_key="id", order="sideways")
    with pytest.raises(ValueError, match="newest_first stream needs a replication_key"):
        Stream("s", "/s", primary_key="id", order="newest_first")
    with pytest.raises(ValueError, match=r"placeholder \{p\} must be a required string or integer"):
        Stream("s", "/s/{p}", primary_key="id", parameters=(Param("p"),))
    with pytest.raises(ValueError, match="declared twice"):
        Stream("s", "/s", primary_key="id", parameters=(Param("p"), Param("p")))
    with pytest.raises(ValueError, match="type 'date' is not one of"):
        Param("p", type="date")
    # A placeholder that names no parameter is a config key's, left for the connector.
    assert Stream("s", "/t/{team}/s", primary_key="id").url_path({}) == ("/t/{team}/s", {})


@responses.activate
def test_path_parameters_fill_one_escaped_segment_and_the_rest_go_in_every_query() -> None:
    for cursor, query in ((None, {}), ("c1", {"cursor": "c1"})):
        responses.get(
            f"{BASE}/channels/C%2F1%3F%23/messages",
            match=[
                responses.matchers.query_param_matcher(
                    {
                        "inclusive": "true",
                        "limit_days": "30",
                        "threads": "true",
                        "oldest": "100",
                        "limit": "100",
                        **query,
                    }
                )
            ],
            json={"data": [{"id": 1, "ts": "150"}, {"id": 2, "ts": "120"}], "next_cursor": "c1"}
            if cursor is None
            else {"data": [{"id": 3, "ts": "110"}], "next_cursor": None},
        )
    client = Chat({"base_url": BASE}, {})
    params = messages().validate_params({"channel": "C/1?#", "limit_days": "30", "threads": "1"})
    first = client.perform_page(messages(), since="100", params=params).value
    assert (first.max_replication, first.min_replication) == ("150", "120")
    assert first.position == "c1" and not first.finished and first.cursor is None
    second = client.perform_page(messages(), since="100", position="c1", params=params).value
    assert second.finished and second.min_replication == "110"
    # read_page validates the params first: a missing one is refused before any request.
    with pytest.raises(UsageError, match="needs the param 'channel'"):
        client.read_page("messages")
    assert len(responses.calls) == 2


@responses.activate
def test_a_delta_stream_starts_at_its_stored_cursor_and_ignores_since_filters() -> None:
    responses.get(
        f"{BASE}/delta",
        match=[responses.matchers.query_param_matcher({"cursor": "token-9", "limit": "100"})],
        json={"data": [{"id": 1}], "next_cursor": None},
    )
    page = Chat({"base_url": BASE}, {}).read_page("deltas", since="token-9")
    assert page.finished and [r["id"] for r in page.records] == [1]


@pytest.mark.parametrize(
    ("value", "since", "expected"),
    [
        ("1700000000.000099", "1700000000.000100", True),  # Slack ts: as numbers
        ("1700000000.0001", "1700000000.000100", False),  # equal: the since is inclusive
        (1699999999, 1700000000, True),  # Stripe's created
        (1700000000, 1700000000, False),
        ("999999999999999999", "1000000000000000000", True),  # snowflakes growing a digit
        ("2026-01-01T00:00:10.5Z", "2026-01-01T00:00:10Z", False),  # text would say below
        ("2026-01-01T00:00:09.9Z", "2026-01-01T00:00:10Z", True),
        ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z", False),  # the same instant
        ("2026-01-01T00:00:00", "2026-01-01T00:00:01Z", True),  # no offset: UTC
        ("b", "c", True),
        ("(unknown)", "2026-01-01T00:00:10Z", False),  # different kinds: not surely below
        (5, "2026-01-01T00:00:10Z", False),
    ],
)
def test_below_compares_replication_values_by_kind(value: Any, since: Any, expected: bool) -> None:
    assert below(value, since) is expected


def test_describe_says_which_streams_read_only_what_changed() -> None:
    """A delta stream (from the provider's cursor) and a newest-first stream the provider
    cannot filter (it stops below its since) read only what changed since the last run, as a
    filtered one does; a stream without a replication key reads everything each time."""

    class Listing(Connector):
        name = "listing"
        streams: ClassVar[tuple[Stream, ...]] = (
            *Chat.streams,
            Stream("pulls", "/pulls", primary_key="id", replication_key="u", order="newest_first"),
            Stream("all", "/all", primary_key="id", replication_key="u"),
            Stream("plain", "/plain", primary_key="id"),
        )

    shown = {s["name"]: s["incremental"] for s in Listing.describe()["streams"]}
    assert shown == {"messages": True, "deltas": True, "pulls": True, "all": False, "plain": False}
