"""The ``items`` listing newest first (``order=desc``) and filtered by tag (``tag=WORD``)."""

from __future__ import annotations

import requests

from spark_integrations.sandbox import SandboxServer
from tests.unit.sandbox.helpers import RECORDS
from tests.unit.sandbox.test_items import order_key, walk_cursor


def test_desc_walks_the_dataset_exactly_once_newest_first(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    ascending = walk_cursor(api, sandbox.url, {}, 100)
    descending = walk_cursor(api, sandbox.url, {"order": "desc"}, 7)
    assert len(descending) == RECORDS
    assert descending == sorted(ascending, key=order_key, reverse=True)


def test_desc_stops_at_updated_since_inclusive(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    ascending = walk_cursor(api, sandbox.url, {}, 100)
    since = ascending[200]["updated_at"]
    newest = walk_cursor(api, sandbox.url, {"order": "desc", "updated_since": since}, 9)
    assert newest == list(reversed(ascending[200:]))


def test_tag_lists_only_items_named_with_that_word_in_either_order(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    everything = walk_cursor(api, sandbox.url, {}, 100)
    tag = everything[0]["name"].split(" ")[0]
    tagged = [r for r in everything if r["name"].split(" ")[0] == tag]
    assert 0 < len(tagged) < len(everything)
    assert walk_cursor(api, sandbox.url, {"tag": tag}, 3) == tagged
    assert walk_cursor(api, sandbox.url, {"tag": tag, "order": "desc"}, 4) == tagged[::-1]
    assert walk_cursor(api, sandbox.url, {"tag": "no-such-word"}, 5) == []


def test_bad_order_or_empty_tag_is_400(sandbox: SandboxServer, api: requests.Session) -> None:
    for params in ({"order": "sideways"}, {"tag": ""}):
        answer = api.get(f"{sandbox.url}/v1/items", params=params, timeout=10)
        assert answer.status_code == 400, answer.text
