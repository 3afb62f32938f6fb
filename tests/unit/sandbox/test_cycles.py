"""Listings asked to loop (``cycle_at``, ``cycle_length``): each style hands back a position it
handed back before, exactly as the fleet must catch it. Read with a plain HTTP client."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from spark_integrations.sandbox import SandboxServer
from tests.unit.sandbox.helpers import API_KEY

# path, size parameter, where the next position is (body field or "link"), request parameter
STYLES = {
    "cursor": ("/v1/items", "limit", "next_cursor", "cursor"),
    "token": ("/v1/items/by-token", "max_results", "nextToken", "next_token"),
    "link": ("/v1/items/by-link", "limit", "link", ""),
    "offset": ("/v1/items/by-offset", "limit", "next_offset", "offset"),
    "page": ("/v1/items/by-page", "per_page", "next_page", "page"),
}


def get(url: str, params: dict[str, Any] | None = None) -> requests.Response:
    answer = requests.get(url, params=params, headers={"X-API-Key": API_KEY}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def walk(base: str, style: str, pages: int, **extra: Any) -> list[tuple[list[str], Any]]:
    """Follow ``pages`` pages (or to the end); each page's record ids and next position."""
    path, size_name, field, name = STYLES[style]
    url, params = base + path, {size_name: 10, **extra}
    seen: list[tuple[list[str], Any]] = []
    for _ in range(pages):
        answer = get(url, params)
        body = answer.json()
        rows = body if style == "link" else body["items" if style == "token" else "data"]
        following = answer.links.get("next", {}).get("url") if style == "link" else body.get(field)
        seen.append(([r["id"] for r in rows], following))
        if following is None:
            break
        if style == "link":
            url, params = following, {}
        else:
            params = {**params, name: following}
    return seen


@pytest.mark.parametrize("length", [1, 2, 3])
@pytest.mark.parametrize("style", list(STYLES))
def test_page_n_hands_back_the_position_of_page_n_minus_length_plus_one(
    sandbox: SandboxServer, style: str, length: int
) -> None:
    seen = walk(sandbox.url, style, 8, cycle_at=5, cycle_length=length)
    positions = [following for _, following in seen]
    assert len(set(positions[:4])) == 4, "pages 1 to 4 hand back new positions"
    assert positions[4] == positions[4 - length], "page 5 hands back the one page 5-K gave"
    # Followed, the cycle repeats itself: the pages after it are pages already served.
    ids = [rows for rows, _ in seen]
    assert ids[5] == ids[5 - length] and ids[4] != ids[3]
    assert positions[5:] == positions[5 - length : 8 - length]


@pytest.mark.parametrize("style", list(STYLES))
def test_a_listing_shorter_than_the_cycle_ends_with_every_record_once(
    sandbox: SandboxServer, style: str
) -> None:
    seen = walk(sandbox.url, style, 40, cycle_at=30)
    ids = [i for rows, _ in seen for i in rows]
    assert len(ids) == 250 and len(set(ids)) == 250
    assert seen[-1][1] is None and len(seen) == 25


def test_the_filter_applies_and_a_link_carries_it_with_the_cycle(sandbox: SandboxServer) -> None:
    records = get(sandbox.url + "/v1/items", {"limit": 100}).json()["data"]
    since = records[50]["updated_at"]
    seen = walk(sandbox.url, "link", 3, cycle_at=2, updated_since=since)
    assert "updated_since=" in seen[0][1] and "cycle_at=2" in seen[0][1]
    assert seen[0][0][0] == records[50]["id"]
    assert seen[1][1] == seen[0][1], "page 2 links to itself"


@pytest.mark.parametrize(
    ("params", "sentence"),
    [
        ({"cycle_at": "1"}, "cycle_at must be a whole number between 2 and"),
        ({"cycle_at": "3", "cycle_length": "3"}, "cycle_at must be a whole number between 4"),
        ({"cycle_at": "x"}, "cycle_at must be a whole number"),
        ({"cycle_at": "3", "cursor": "bm9wZQ"}, "cursor is not a position of this looping"),
        ({"cycle_at": "3", "limit": "0"}, "limit must be a whole number between 1 and 100"),
    ],
)
def test_bad_loop_parameters_get_one_sentence(
    sandbox: SandboxServer, params: dict[str, str], sentence: str
) -> None:
    answer = requests.get(
        sandbox.url + "/v1/items", params=params, headers={"X-API-Key": API_KEY}, timeout=10
    )
    assert answer.status_code == 400
    assert sentence in answer.json()["message"]
