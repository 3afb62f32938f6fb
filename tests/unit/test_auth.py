"""The authenticators against ``responses``: where credentials go, caching, error translation."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter

from spark_integrations.connectors.auth import (
    APIKeyAuthenticator,
    BasicAuthenticator,
    BearerTokenAuthenticator,
    OAuth2Authenticator,
)
from spark_integrations.connectors.oauth import ClientCredentialsAuthenticator
from spark_integrations.errors import (
    AuthenticationError,
    FatalError,
    RateLimitedError,
    RetriableError,
)

API = "https://api.example.test/v1/items"
TOKEN_URL = "https://auth.example.test/oauth/token"
SECRET = "s3cr3t-value"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(API, json={"data": []})
        yield mock


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def call_api(session: requests.Session, auth: requests.auth.AuthBase, url: str = API) -> None:
    with session.get(url, auth=auth, timeout=5) as response:
        assert response.status_code == 200


def last_request(rsps: responses.RequestsMock) -> requests.PreparedRequest:
    request: requests.PreparedRequest = rsps.calls[-1].request
    return request


def form(request: requests.PreparedRequest) -> dict[str, str]:
    body = request.body
    text = body.decode() if isinstance(body, bytes) else str(body or "")
    return {k: v[-1] for k, v in parse_qs(text).items()}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- static credentials ---------------------------------------------------------------------------


def test_api_key_in_header(rsps: responses.RequestsMock, session: requests.Session) -> None:
    call_api(session, APIKeyAuthenticator(SECRET))
    assert last_request(rsps).headers["X-API-Key"] == SECRET


def test_api_key_in_header_with_prefix(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    call_api(session, APIKeyAuthenticator(SECRET, name="Authorization", prefix="Token"))
    assert last_request(rsps).headers["Authorization"] == f"Token {SECRET}"


def test_api_key_in_query(rsps: responses.RequestsMock, session: requests.Session) -> None:
    auth = APIKeyAuthenticator(SECRET, location="query", name="api_key")
    with session.get(API, params={"limit": 5}, auth=auth) as response:
        assert response.status_code == 200
    request = last_request(rsps)
    assert parse_qs(urlsplit(str(request.url)).query) == {"limit": ["5"], "api_key": [SECRET]}
    assert "X-API-Key" not in request.headers


def test_api_key_in_query_replaces_one_already_in_a_link(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    auth = APIKeyAuthenticator(SECRET, location="query", name="api_key")
    call_api(session, auth, f"{API}?page=2&sig=a%2Fb&api_key=old")
    assert str(last_request(rsps).url) == f"{API}?page=2&sig=a%2Fb&api_key={SECRET}"


def test_api_key_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="location"):
        APIKeyAuthenticator(SECRET, location="cookie")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        APIKeyAuthenticator("")


def test_bearer(rsps: responses.RequestsMock, session: requests.Session) -> None:
    call_api(session, BearerTokenAuthenticator(SECRET))
    assert last_request(rsps).headers["Authorization"] == f"Bearer {SECRET}"


def test_basic(rsps: responses.RequestsMock, session: requests.Session) -> None:
    call_api(session, BasicAuthenticator("user", SECRET))
    assert last_request(rsps).headers["Authorization"] == basic("user", SECRET)


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (
            APIKeyAuthenticator(SECRET, location="query", name="key"),
            "APIKeyAuthenticator(location='query', name='key', prefix=None)",
        ),
        (BearerTokenAuthenticator(SECRET), "BearerTokenAuthenticator()"),
        (BasicAuthenticator(SECRET, SECRET), "BasicAuthenticator()"),
        (OAuth2Authenticator(lambda: SECRET), "OAuth2Authenticator()"),
        (
            ClientCredentialsAuthenticator(TOKEN_URL + "?x=" + SECRET, "cid", SECRET),
            f"ClientCredentialsAuthenticator(token_url='{TOKEN_URL}', client_id='cid', "
            "auth_method='client_secret_basic', scopes=None)",
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else "",
)
def test_repr_and_str_hide_secrets(auth: requests.auth.AuthBase, expected: str) -> None:
    assert repr(auth) == expected
    assert SECRET not in repr(auth) and SECRET not in str(auth)


# --- OAuth 2.0 with the caller's tokens -----------------------------------------------------------


def test_oauth2_asks_token_source_on_every_request(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    tokens = iter(["t1", "t2"])
    auth = OAuth2Authenticator(lambda: next(tokens))
    call_api(session, auth)
    assert last_request(rsps).headers["Authorization"] == "Bearer t1"
    call_api(session, auth)
    assert last_request(rsps).headers["Authorization"] == "Bearer t2"


def test_oauth2_invalidate_calls_back() -> None:
    calls: list[str] = []
    OAuth2Authenticator(lambda: "t", on_invalidate=lambda: calls.append("x")).invalidate()
    assert calls == ["x"]
    OAuth2Authenticator(lambda: "t").invalidate()  # no callback: nothing to do


# --- client credentials ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_endpoint(
    rsps: responses.RequestsMock, url: str = TOKEN_URL, expires_in: int | None = 3600
) -> list[str]:
    """Serve a token endpoint handing out tok1, tok2, ...; returns the tokens issued."""
    issued: list[str] = []

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        issued.append(f"tok{len(issued) + 1}")
        body: dict[str, Any] = {"access_token": issued[-1], "token_type": "Bearer"}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return 200, {}, json.dumps(body)

    rsps.add_callback(responses.POST, url, callback=callback)
    return issued


def token_requests(rsps: responses.RequestsMock) -> list[requests.PreparedRequest]:
    return [c.request for c in rsps.calls if c.request.method == "POST"]


def test_client_secret_basic_sends_credentials_in_header(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    token_endpoint(rsps)
    auth = ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET, scopes=["read", "write"])
    call_api(session, auth)
    (request,) = token_requests(rsps)
    assert request.headers["Authorization"] == basic("cid", SECRET)
    assert form(request) == {"grant_type": "client_credentials", "scope": "read write"}
    assert last_request(rsps).headers["Authorization"] == "Bearer tok1"


def test_client_secret_post_sends_credentials_in_body(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    token_endpoint(rsps)
    auth = ClientCredentialsAuthenticator(
        TOKEN_URL, "cid", SECRET, auth_method="client_secret_post"
    )
    call_api(session, auth)
    (request,) = token_requests(rsps)
    assert "Authorization" not in request.headers
    assert form(request) == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": SECRET,
    }
    assert last_request(rsps).headers["Authorization"] == "Bearer tok1"


def test_token_is_cached(rsps: responses.RequestsMock, session: requests.Session) -> None:
    token_endpoint(rsps)
    auth = ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET)
    for _ in range(3):
        call_api(session, auth)
    assert auth.issued == 1 and len(token_requests(rsps)) == 1
    assert [c.request.headers["Authorization"] for c in rsps.calls[1:]] == ["Bearer tok1"] * 3


@pytest.mark.parametrize(
    ("expires_in", "renew_after"),
    [(100, 90.0), (3600, 3540.0), (30, 27.0)],
    ids=["10-percent", "60-seconds", "short"],
)
def test_token_reissued_near_expiry(
    rsps: responses.RequestsMock, expires_in: int, renew_after: float
) -> None:
    token_endpoint(rsps, expires_in=expires_in)
    clock = Clock()
    auth = ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET, clock=clock)
    assert auth.access_token() == "tok1"
    clock.now += renew_after - 0.5
    assert auth.access_token() == "tok1"
    clock.now += 0.5
    assert auth.access_token() == "tok2"
    assert auth.issued == 2


def test_token_without_expiry_lives_until_invalidated(rsps: responses.RequestsMock) -> None:
    token_endpoint(rsps, expires_in=None)
    clock = Clock()
    auth = ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET, clock=clock)
    assert auth.access_token() == "tok1"
    clock.now += 10**7
    assert auth.access_token() == "tok1"
    auth.invalidate()
    assert auth.access_token() == "tok2"


def test_token_reissued_after_invalidate(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    token_endpoint(rsps)
    auth = ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET)
    call_api(session, auth)
    auth.invalidate()
    call_api(session, auth)
    assert auth.issued == 2
    assert last_request(rsps).headers["Authorization"] == "Bearer tok2"


def test_invalidate_of_an_older_token_keeps_the_new_one(rsps: responses.RequestsMock) -> None:
    token_endpoint(rsps)
    auth = ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET)
    assert auth.access_token() == "tok1"
    auth.invalidate("tok1")
    assert auth.access_token() == "tok2"
    auth.invalidate("tok1")  # a second thread's 401 with the same old token
    assert auth.access_token() == "tok2"
    assert auth.issued == 2


class CountingLock:
    """A lock that counts the acquirers who found it held (and so waited)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waited = 0
        self._count = threading.Lock()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            with self._count:
                self.waited += 1
            self._lock.acquire()

    def __exit__(self, *_: object) -> None:
        self._lock.release()


def test_threads_share_one_fetch(rsps: responses.RequestsMock) -> None:
    """Eight threads ask at once; the one fetch is held until the seven others are seen
    waiting for it (the race, proven): all get its token, one is issued."""
    auth = ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET)
    lock = CountingLock()
    auth._lock = lock  # type: ignore[assignment]

    def slow_token(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        deadline = time.monotonic() + 30
        while lock.waited < 7:
            assert time.monotonic() < deadline, f"only {lock.waited} threads waited"
            time.sleep(0.005)
        return 200, {}, json.dumps({"access_token": "tok1", "expires_in": 3600})

    rsps.add_callback(responses.POST, TOKEN_URL, callback=slow_token)
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(auth.access_token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert seen == ["tok1"] * 8 and auth.issued == 1
    assert lock.waited == 7


def test_loopback_http_token_url_is_allowed(rsps: responses.RequestsMock) -> None:
    url = "http://127.0.0.1:8999/oauth/token"
    token_endpoint(rsps, url=url)
    auth = ClientCredentialsAuthenticator(url, "cid", SECRET)
    assert auth.access_token() == "tok1"
    assert token_requests(rsps)[0].url == url


@pytest.mark.parametrize("url", ["http://auth.example.test/token", "ftp://x/token", "token"])
def test_other_insecure_token_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        ClientCredentialsAuthenticator(url, "cid", SECRET)


def test_given_session_carries_the_token_request(rsps: responses.RequestsMock) -> None:
    sent: list[str] = []

    class Recording(HTTPAdapter):
        def send(self, *args: Any, **kwargs: Any) -> requests.Response:
            sent.append(str(args[0].url))
            return super().send(*args, **kwargs)

    token_endpoint(rsps)
    with requests.Session() as shared:
        shared.mount("https://auth.example.test/", Recording())
        auth = ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET, session=shared)
        assert auth.access_token() == "tok1"
        assert sent == [TOKEN_URL]
        call_api(shared, auth)  # the session is still open and usable
        auth.invalidate()
        assert auth.access_token() == "tok2"
        assert sent == [TOKEN_URL, TOKEN_URL]


def test_debug_logs_never_show_the_secret(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    token_endpoint(rsps)
    caplog.set_level(logging.DEBUG)
    auth = ClientCredentialsAuthenticator(
        TOKEN_URL, "cid", SECRET, auth_method="client_secret_post"
    )
    assert auth.access_token() == "tok1"
    assert SECRET not in caplog.text and "tok1" not in caplog.text


# --- client credentials: token endpoint failures --------------------------------------------------


def fail_with(rsps: responses.RequestsMock, **kwargs: Any) -> ClientCredentialsAuthenticator:
    rsps.post(TOKEN_URL, **kwargs)
    return ClientCredentialsAuthenticator(TOKEN_URL, "cid", SECRET, connector="acme")


def assert_clean(exc: Exception) -> None:
    assert SECRET not in str(exc) and SECRET not in repr(exc)
    assert "acme" in str(exc)
    assert getattr(exc, "connector", None) == "acme"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, "invalid_client"),
        (400, "invalid_client"),
        (400, "invalid_grant"),
        (400, "unauthorized_client"),
        (401, None),
    ],
)
def test_refused_credentials_raise_authentication_error(
    rsps: responses.RequestsMock, status: int, error: str | None
) -> None:
    body = {"error": error, "error_description": f"bad secret {SECRET}"} if error else {}
    auth = fail_with(rsps, status=status, json=body)
    with pytest.raises(AuthenticationError) as info:
        auth.access_token()
    assert info.value.status == status
    assert str(status) in str(info.value)
    assert_clean(info.value)
    assert auth.issued == 0


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, {"error": "invalid_scope"}), (400, {"error": "unsupported_grant_type"}), (404, {})],
)
def test_other_refusals_raise_fatal_error(
    rsps: responses.RequestsMock, status: int, body: dict[str, str]
) -> None:
    auth = fail_with(rsps, status=status, json=body)
    with pytest.raises(FatalError) as info:
        auth.access_token()
    assert info.value.status == status
    assert_clean(info.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retriable(rsps: responses.RequestsMock, status: int) -> None:
    auth = fail_with(rsps, status=status, body="<html>Service Unavailable</html>")
    with pytest.raises(RetriableError) as info:
        auth.access_token()
    assert info.value.status == status and str(status) in str(info.value)
    assert_clean(info.value)


def test_rate_limited_token_endpoint(rsps: responses.RequestsMock) -> None:
    auth = fail_with(rsps, status=429, json={}, headers={"Retry-After": "7"})
    with pytest.raises(RateLimitedError) as info:
        auth.access_token()
    assert info.value.retry_after == 7.0 and info.value.status == 429
    assert_clean(info.value)


@pytest.mark.parametrize(
    "exc",
    [requests.ConnectionError("refused"), requests.ConnectTimeout("slow"), requests.ReadTimeout()],
    ids=["connection", "connect-timeout", "read-timeout"],
)
def test_network_errors_are_retriable(rsps: responses.RequestsMock, exc: Exception) -> None:
    auth = fail_with(rsps, body=exc)
    with pytest.raises(RetriableError) as info:
        auth.access_token()
    assert info.value.status is None and type(exc).__name__ in str(info.value)
    assert_clean(info.value)


@pytest.mark.parametrize(
    "body",
    [
        "<html>oops</html>",
        "null",
        "[1, 2]",
        '"text"',
        '{"token_type": "Bearer"}',
        '{"access_token": 5}',
    ],
    ids=["html", "null", "list", "string", "no-token", "token-not-string"],
)
def test_garbage_answers_are_retriable(rsps: responses.RequestsMock, body: str) -> None:
    auth = fail_with(rsps, status=200, body=body, content_type="application/json")
    with pytest.raises(RetriableError) as info:
        auth.access_token()
    assert_clean(info.value)
    assert auth.issued == 0


def test_error_in_a_200_answer_is_translated(rsps: responses.RequestsMock) -> None:
    auth = fail_with(rsps, status=200, json={"error": "invalid_client"})
    with pytest.raises(AuthenticationError) as info:
        auth.access_token()
    assert_clean(info.value)


def test_failure_reaches_the_caller_of_a_request(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    auth = fail_with(rsps, status=401, json={"error": "invalid_client"})
    with pytest.raises(AuthenticationError):
        call_api(session, auth)
    assert len(rsps.calls) == 1  # the API itself was never called


# --- credentials an HTTP header cannot carry ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        ("api_key", "sk-live-abc_DEF.123~+/=", False),
        ("api_key", "sk live", True),
        ("api_key", "sk-\nX-Evil: 1", True),
        ("api_key", "sk-é", True),
        ("username", "user:name", True),
        ("username", "jos\u00e9", False),
        ("password", "p\u00e4ss w\u00f6rd", False),
        ("password", "pass\r\nword", True),
        ("password", "\u5bc6\u7801", True),
        ("client_secret", "cs\x00", True),
        ("webhook_secret", "whsec_\n anything", False),
        ("private_key", "-----BEGIN KEY-----\nabc\n-----END KEY-----", False),
    ],
)
def test_secret_values_the_scheme_cannot_send_are_refused(
    key: str, value: str, refused: bool
) -> None:
    from spark_integrations.connectors.auth import check_secret_values, secret_value_problem
    from spark_integrations.errors import UsageError

    problem = secret_value_problem(key, value)
    assert (problem is not None) is refused
    if refused:
        assert problem is not None and problem.startswith(f"secret {key} ")
        assert value not in problem
        with pytest.raises(UsageError):
            check_secret_values({key: value})


@pytest.mark.parametrize(
    "auth",
    [
        lambda: APIKeyAuthenticator("k\ney"),
        lambda: APIKeyAuthenticator("k\ney", location="query"),
        lambda: BearerTokenAuthenticator("t\u00e9"),
        lambda: BasicAuthenticator("u:x", "p"),
        lambda: BasicAuthenticator("u", "p\r\n"),
        lambda: OAuth2Authenticator(lambda: "tok en"),
    ],
)
def test_an_authenticator_refuses_an_unsendable_credential_without_quoting_it(auth: Any) -> None:
    from spark_integrations.errors import FatalError

    request = requests.Request("GET", "https://api.example.test/x").prepare()
    with pytest.raises(FatalError) as info:
        auth()(request)
    assert "cannot be sent in an HTTP header" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__ is False
    for fragment in ("k\ney", "t\u00e9", "u:x", "p\r\n", "tok en"):
        assert fragment not in str(info.value)


def test_header_names_and_prefixes_must_be_visible_ascii() -> None:
    with pytest.raises(ValueError):
        APIKeyAuthenticator("k", name="X-Key\n")
    with pytest.raises(ValueError):
        APIKeyAuthenticator("k", prefix="T\u00f6ken")
