"""The paginators and authenticators against the real sandbox server, over real HTTP.

The sandbox shares no code with ``connectors``: a pass here means the framework speaks each
pagination style and each credential kind as a separate server implements them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.auth import AuthBase

from spark_integrations.connectors.auth import (
    APIKeyAuthenticator,
    BasicAuthenticator,
    BearerTokenAuthenticator,
    OAuth2Authenticator,
)
from spark_integrations.connectors.oauth import ClientCredentialsAuthenticator
from spark_integrations.connectors.pagination import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
    extract,
)
from spark_integrations.errors import AuthenticationError
from spark_integrations.sandbox import SandboxOptions, SandboxServer

RECORDS = 1_050
KEY = "k-integration"
CLIENT_ID = "sandbox"
CLIENT_SECRET = "sandbox-secret"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxOptions(port=0, records=RECORDS, api_key=KEY, seed=7)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def short_ttl_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(port=0, records=5, api_key=KEY, token_ttl=1.0)) as server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def walk(
    session: requests.Session,
    paginator: Paginator,
    url: str,
    path: str | None,
    auth: AuthBase,
    params: dict[str, Any] | None = None,
) -> list[str]:
    """Every record id of the listing, in the order served."""
    ids: list[str] = []
    while not paginator.finished:
        assert paginator.pages <= RECORDS // 10, "the walk did not end"
        page_url, page_params = paginator.request(url, params or {})
        with session.get(page_url, params=page_params, auth=auth, timeout=10) as response:
            assert response.status_code == 200, response.text
            records = extract(response.json(), path)
            assert isinstance(records, list)
            ids.extend(record["id"] for record in records)
            paginator.advance(response, records)
    return ids


STYLES: list[tuple[str, str | None, Callable[..., Paginator]]] = [
    ("/v1/items", "data", CursorPaginator),
    ("/v1/items/by-offset", "data", OffsetPaginator),
    ("/v1/items/by-page", "data", PageNumberPaginator),
    ("/v1/items/by-link", None, lambda **kw: LinkHeaderPaginator(size_param="limit", **kw)),
    ("/v1/items/by-token", "items", NextTokenPaginator),
]
STYLE_IDS = ["cursor", "offset", "page-number", "link-header", "next-token"]


@pytest.mark.parametrize(("path", "records_path", "make"), STYLES, ids=STYLE_IDS)
@pytest.mark.parametrize("page_size", [100, 37])
def test_every_style_serves_every_record_once(
    sandbox: SandboxServer,
    session: requests.Session,
    path: str,
    records_path: str | None,
    make: Callable[..., Paginator],
    page_size: int,
) -> None:
    paginator = make(page_size=page_size, connector="sandbox")
    ids = walk(session, paginator, sandbox.url + path, records_path, APIKeyAuthenticator(KEY))
    assert len(ids) == RECORDS
    assert len(set(ids)) == RECORDS
    assert paginator.finished
    assert paginator.pages >= -(-RECORDS // page_size)


@pytest.mark.parametrize(("path", "records_path", "make"), STYLES, ids=STYLE_IDS)
def test_every_style_resumes_from_a_checkpoint(
    sandbox: SandboxServer,
    session: requests.Session,
    path: str,
    records_path: str | None,
    make: Callable[..., Paginator],
) -> None:
    auth = BearerTokenAuthenticator(KEY)
    url = sandbox.url + path
    full = walk(session, make(), url, records_path, auth)

    first = make()
    head: list[str] = []
    for _ in range(4):
        page_url, page_params = first.request(url, {})
        with session.get(page_url, params=page_params, auth=auth, timeout=10) as response:
            records = extract(response.json(), records_path)
            head.extend(record["id"] for record in records)
            first.advance(response, records)
    checkpoint = first.current_value

    rest = walk(session, make(start_value=checkpoint), url, records_path, auth)
    assert head + rest == full
    assert len(set(full)) == RECORDS


def test_link_pages_keep_the_query_key_once(
    sandbox: SandboxServer, session: requests.Session
) -> None:
    sent: list[str] = []
    session.hooks["response"].append(lambda r, *args, **kwargs: sent.append(r.request.url))
    auth = APIKeyAuthenticator(KEY, location="query", name="api_key")
    ids = walk(session, LinkHeaderPaginator(), sandbox.url + "/v1/items/by-link", None, auth)
    assert len(ids) == len(set(ids)) == RECORDS
    assert len(sent) == 11
    assert all(parse_qs(urlsplit(url).query)["api_key"] == [KEY] for url in sent)


def test_updated_since_filter_is_kept_across_pages(
    sandbox: SandboxServer, session: requests.Session
) -> None:
    auth = APIKeyAuthenticator(KEY)
    url = sandbox.url + "/v1/items"
    with session.get(url, params={"limit": 100}, auth=auth, timeout=10) as response:
        cut = response.json()["data"][50]["updated_at"]
    for path, records_path, make in STYLES:
        ids = walk(session, make(), sandbox.url + path, records_path, auth, {"updated_since": cut})
        assert 0 < len(ids) < RECORDS and len(set(ids)) == len(ids), path


# --- authenticators -------------------------------------------------------------------------------


def get_items(session: requests.Session, server: SandboxServer, auth: AuthBase) -> int:
    with session.get(server.url + "/v1/items", params={"limit": 1}, auth=auth, timeout=10) as r:
        return r.status_code


def client_credentials(
    server: SandboxServer, method: str, secret: str = CLIENT_SECRET, **kwargs: Any
) -> ClientCredentialsAuthenticator:
    return ClientCredentialsAuthenticator(
        server.url + "/oauth/token",
        CLIENT_ID,
        secret,
        auth_method=method,  # type: ignore[arg-type]
        connector="sandbox",
        **kwargs,
    )


def revoke_all(session: requests.Session, server: SandboxServer) -> None:
    with session.post(server.url + "/_sandbox/revoke", json={"all": True}, timeout=10) as r:
        assert r.status_code == 200


@pytest.mark.parametrize(
    "auth",
    [
        APIKeyAuthenticator(KEY),
        APIKeyAuthenticator(KEY, location="query", name="api_key"),
        APIKeyAuthenticator(KEY, name="Authorization", prefix="Bearer"),
        BearerTokenAuthenticator(KEY),
        BasicAuthenticator(CLIENT_ID, CLIENT_SECRET),
        OAuth2Authenticator(lambda: KEY),
    ],
    ids=["key-header", "key-query", "key-prefixed", "bearer", "basic", "oauth2-source"],
)
def test_static_credentials_are_accepted(
    sandbox: SandboxServer, session: requests.Session, auth: AuthBase
) -> None:
    assert get_items(session, sandbox, auth) == 200


@pytest.mark.parametrize(
    "auth",
    [
        APIKeyAuthenticator("wrong"),
        APIKeyAuthenticator("wrong", location="query", name="api_key"),
        BearerTokenAuthenticator("wrong"),
        BasicAuthenticator(CLIENT_ID, "wrong"),
        OAuth2Authenticator(lambda: "wrong"),
    ],
    ids=["key-header", "key-query", "bearer", "basic", "oauth2-source"],
)
def test_wrong_credentials_get_401(
    sandbox: SandboxServer, session: requests.Session, auth: AuthBase
) -> None:
    assert get_items(session, sandbox, auth) == 401


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_token_is_accepted_and_cached(
    sandbox: SandboxServer, session: requests.Session, method: str
) -> None:
    auth = client_credentials(sandbox, method)
    for _ in range(3):
        assert get_items(session, sandbox, auth) == 200
    assert auth.issued == 1


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_reissued_after_revoke_and_invalidate(
    sandbox: SandboxServer, session: requests.Session, method: str
) -> None:
    auth = client_credentials(sandbox, method, session=session)
    assert get_items(session, sandbox, auth) == 200
    revoke_all(session, sandbox)
    assert get_items(session, sandbox, auth) == 401
    auth.invalidate()  # what a connector does, once, after a 401
    assert get_items(session, sandbox, auth) == 200
    assert auth.issued == 2


def test_client_credentials_reissued_before_a_short_ttl_runs_out(
    short_ttl_sandbox: SandboxServer, session: requests.Session
) -> None:
    now = [0.0]
    auth = client_credentials(short_ttl_sandbox, "client_secret_basic", clock=lambda: now[0])
    assert get_items(session, short_ttl_sandbox, auth) == 200
    now[0] += 0.95  # by the authenticator's clock: within the renewal margin of its 1-s token
    assert get_items(session, short_ttl_sandbox, auth) == 200
    assert auth.issued == 2


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_with_a_wrong_secret(
    sandbox: SandboxServer, session: requests.Session, method: str
) -> None:
    auth = client_credentials(sandbox, method, secret="wrong-secret")
    with pytest.raises(AuthenticationError) as info:
        get_items(session, sandbox, auth)
    assert info.value.status == 401 and "invalid_client" in str(info.value)
    assert "wrong-secret" not in str(info.value)
    assert auth.issued == 0
