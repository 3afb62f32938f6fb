"""What the paginator tests share: fake listings served by ``responses`` on one base URL, a
session to read them, and a walk that follows a paginator to its end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from spark_integrations.connectors.pagination import Paginator, extract

API = "https://api.example.test"
Reply = tuple[int, dict[str, str], str]


@pytest.fixture(name="rsps")
def rsps_fixture() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(name="session")
def session_fixture() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def query(request: requests.PreparedRequest) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}


def walk(
    session: requests.Session,
    paginator: Paginator,
    url: str,
    params: dict[str, Any] | None = None,
    path: str | None = "data",
    max_pages: int = 50,
) -> list[str]:
    """Follow the paginator to the end; return the ids of every record seen, in order."""
    ids: list[str] = []
    while not paginator.finished:
        assert paginator.pages < max_pages, "the walk did not end"
        page_url, page_params = paginator.request(url, params or {})
        with session.get(page_url, params=page_params, timeout=5) as response:
            records = extract(response.json(), path)
            ids.extend(record["id"] for record in records)
            paginator.advance(response, records)
    return ids
