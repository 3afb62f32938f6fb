"""Next links are followed on the connection's own origin only (examples, 1,000-case property)."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_integrations.connectors.pagination import LinkHeaderPaginator
from spark_integrations.errors import FatalError

FIRST = "https://api.example.com/v1/items?limit=2"


def answer(url: str, link: str) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.url = url
    response.headers["Link"] = f'<{link}>; rel="next"'
    response._content = b"[]"
    return response


@pytest.mark.parametrize(
    "link",
    [
        "https://api.example.com/v1/items?page=2",
        "/v1/items?page=2",
        "?page=2",
        "https://API.example.com:443/v1/items?page=2",
    ],
)
def test_links_on_the_same_origin_are_followed(link: str) -> None:
    paginator = LinkHeaderPaginator(connector="acme")
    paginator.advance(answer(FIRST, link), [{"id": 1}])
    assert paginator.current_value == urljoin(FIRST, link)
    url, params = paginator.request(FIRST, {})
    assert url == urljoin(FIRST, link) and params == {}


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/v1/items?page=2",
        "//evil.example/v1/items",
        "http://api.example.com/v1/items?page=2",
        "https://api.example.com:8443/v1/items",
        "https://user:pw@api.example.com/v1/items",
        "https://api.example.com.evil.example/v1",
    ],
)
def test_links_to_another_origin_end_the_walk(link: str) -> None:
    paginator = LinkHeaderPaginator(connector="acme")
    with pytest.raises(FatalError) as info:
        paginator.advance(answer(FIRST, link), [{"id": 1}])
    assert str(info.value).startswith(
        "acme handed back a next-page link to another origin; next links are followed on the "
        "connection's own origin only."
    )
    assert "evil" not in str(info.value) and "pw" not in str(info.value)


def test_a_stored_position_on_another_origin_is_not_requested() -> None:
    paginator = LinkHeaderPaginator("https://evil.example/v1/items?page=3", connector="acme")
    with pytest.raises(FatalError, match="another origin"):
        paginator.request(FIRST, {})


@settings(max_examples=1000, deadline=None)
@given(
    scheme=st.sampled_from(["https:", "http:", ""]),
    authority=st.sampled_from(
        ["//api.example.com", "//API.EXAMPLE.COM", "//api.example.com:443", "//evil.example",
         "//api.example.com:444", "//u:p@api.example.com", "//api.example.com@evil.example", ""]
    ),
    path=st.sampled_from(["/v1/items", "", "/../x", "/v1/items/../../y", "x"]),
    query=st.sampled_from(["", "?page=2", "?cursor=a%2Fb", "?next=https://evil.example/"]),
)  # fmt: skip
def test_every_followed_link_is_on_the_connection_origin(
    scheme: str, authority: str, path: str, query: str
) -> None:
    link = f"{scheme}{authority}{path}{query}" or "?page=9"
    paginator = LinkHeaderPaginator(connector="acme")
    try:
        paginator.advance(answer(FIRST, link), [{"id": 1}])
    except FatalError:
        assert not on_api_origin(urljoin(FIRST, link))
        return
    if not paginator.finished:
        assert on_api_origin(paginator.request(FIRST, {})[0])


def on_api_origin(url: str) -> bool:
    """Written out by hand rather than with the code under test."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        return False
    return (parts.scheme, parts.hostname, port, "@" in parts.netloc) == (
        "https", "api.example.com", 443, False
    )  # fmt: skip
