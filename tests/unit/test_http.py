"""connectors.http: Retry-After and rate-limit headers, the judge, JSON bodies, and send()."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NewConnectionError

from spark_integrations.connectors import http
from spark_integrations.connectors.http import (
    RateLimitHint,
    http_session,
    judge,
    parse_json,
    parse_retry_after,
    rate_limit_hint,
    send,
)
from spark_integrations.constants import USER_AGENT
from spark_integrations.errors import (
    AuthenticationError,
    FatalError,
    ProviderError,
    RateLimitedError,
    RetriableError,
)

URL = "https://provider.example.test/v1/things"
NAME = "acme"
# Wed, 21 Oct 2015 07:28:00 GMT
DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
DATE_EPOCH = 1445412480.0


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def make_response(
    status: int, body: bytes | str = b"", headers: dict[str, str] | None = None
) -> requests.Response:
    """A ``requests.Response`` as the session would hand it back, without a network."""
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else body
    response.headers = CaseInsensitiveDict(headers or {})
    response.encoding = "utf-8"
    response.url = URL
    return response


# --- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("12", 12.0),
        ("1.5", 1.5),
        ("  30  ", 30.0),
        ("120\n", 120.0),
    ],
)
def test_retry_after_delta_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date_counts_from_now() -> None:
    assert parse_retry_after(DATE, now=DATE_EPOCH - 90) == pytest.approx(90.0)
    assert parse_retry_after(DATE, now=DATE_EPOCH) == pytest.approx(0.0)


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after(DATE, now=DATE_EPOCH + 3600) == 0.0


def test_retry_after_http_date_defaults_to_the_clock() -> None:
    future = formatdate(time.time() + 300, usegmt=True)
    wait = parse_retry_after(future)
    assert wait is not None
    # formatdate drops the fraction of a second; the clock only moves forward.
    assert 290 < wait <= 300


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "soon", "Mon, 99 Foo 2015", "12 seconds", "0x10", "NaN", "nan", "inf",
     "-inf", "1e400"],
)  # fmt: skip
def test_retry_after_garbage_and_non_finite_are_none(value: str | None) -> None:
    assert parse_retry_after(value, now=DATE_EPOCH) is None


@pytest.mark.parametrize("value", ["-5", "-0.1", "-1e9"])
def test_retry_after_negative_is_clamped_to_zero(value: str) -> None:
    assert parse_retry_after(value) == 0.0


# --- rate_limit_hint --------------------------------------------------------------------------

NOW = 1_700_000_000.0


def test_hint_without_headers_is_empty() -> None:
    assert rate_limit_hint({}, now=NOW) == RateLimitHint()
    assert rate_limit_hint({"Content-Type": "application/json"}, now=NOW) == RateLimitHint(
        None, None, None, None
    )


def test_hint_reads_x_ratelimit_headers() -> None:
    hint = rate_limit_hint(
        {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "7",
            "X-RateLimit-Reset": "12",
            "Retry-After": "3",
        },
        now=NOW,
    )
    assert hint == RateLimitHint(limit=100.0, remaining=7.0, reset_in=12.0, retry_after=3.0)


def test_hint_reset_as_epoch_seconds_counts_from_now() -> None:
    hint = rate_limit_hint({"X-RateLimit-Reset": str(int(NOW) + 45)}, now=NOW)
    assert hint.reset_in == pytest.approx(45.0)


def test_hint_reset_epoch_in_the_past_is_zero() -> None:
    hint = rate_limit_hint({"X-RateLimit-Reset": str(int(NOW) - 100)}, now=NOW)
    assert hint.reset_in == 0.0


def test_hint_reset_as_delta_is_not_read_as_epoch() -> None:
    # A year of seconds is the threshold: below it a reset is a delta, whatever "now" is.
    assert rate_limit_hint({"X-RateLimit-Reset": "3600"}, now=NOW).reset_in == 3600.0
    assert rate_limit_hint({"X-RateLimit-Reset": "31536000"}, now=NOW).reset_in == 31_536_000.0
    epoch = rate_limit_hint({"X-RateLimit-Reset": "31536001"}, now=31_536_000.0)
    assert epoch.reset_in == pytest.approx(1.0)


def test_hint_negative_delta_reset_is_zero() -> None:
    assert rate_limit_hint({"X-RateLimit-Reset": "-5"}, now=NOW).reset_in == 0.0


def test_hint_reads_ietf_ratelimit_headers() -> None:
    hint = rate_limit_hint(
        {"RateLimit-Limit": "100, 100;w=60", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"},
        now=NOW,
    )
    assert hint.limit == 100.0
    assert hint.remaining == 0.0
    assert hint.reset_in == 30.0
    assert hint.retry_after is None


def test_hint_prefers_x_headers_over_ietf_ones() -> None:
    hint = rate_limit_hint(
        {
            "X-RateLimit-Limit": "10",
            "RateLimit-Limit": "999",
            "X-RateLimit-Reset": "5",
            "RateLimit-Reset": "500",
        },
        now=NOW,
    )
    assert hint.limit == 10.0
    assert hint.reset_in == 5.0


def test_hint_skips_unreadable_values_and_falls_back() -> None:
    hint = rate_limit_hint(
        {
            "X-RateLimit-Limit": "lots",
            "RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "nan",
            "X-RateLimit-Reset": "inf",
            "Retry-After": "whenever",
        },
        now=NOW,
    )
    assert hint == RateLimitHint(limit=50.0, remaining=None, reset_in=None, retry_after=None)


def test_hint_is_case_insensitive_with_response_headers() -> None:
    headers = CaseInsensitiveDict(
        {"x-ratelimit-limit": "20", "ratelimit-remaining": "4", "retry-after": DATE}
    )
    hint = rate_limit_hint(headers, now=DATE_EPOCH - 10)
    assert hint.limit == 20.0
    assert hint.remaining == 4.0
    assert hint.retry_after == pytest.approx(10.0)


# --- judge ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_judge_passes_2xx(status: int) -> None:
    judge(make_response(status, b"whatever"), connector=NAME)  # raises on failure


@pytest.mark.parametrize("status", [300, 301, 302, 304, 307, 308, 399])
def test_judge_refuses_a_redirect_it_does_not_follow(status: int) -> None:
    # GitHub answers 301/307 for a moved repository: its body is no result of the request.
    response = make_response(
        status, b'{"message": "Moved Permanently"}', {"Location": "https://x.test/?t=s3cr3t"}
    )
    with pytest.raises(FatalError) as info:
        judge(response, connector=NAME)
    assert "redirect" in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_judge_429_is_rate_limited_with_retry_after() -> None:
    response = make_response(429, b"slow down", {"Retry-After": "7"})
    with pytest.raises(RateLimitedError) as info:
        judge(response, connector=NAME)
    err = info.value
    assert isinstance(err, RetriableError)
    assert err.retry_after == 7.0
    assert err.maybe_applied is False
    assert err.status == 429
    assert err.connector == NAME
    assert err.response is response
    assert NAME in str(err)
    assert "429" in str(err)


def test_judge_429_retry_after_as_http_date() -> None:
    future = formatdate(time.time() + 120, usegmt=True)
    with pytest.raises(RateLimitedError) as info:
        judge(make_response(429, headers={"Retry-After": future}), connector=NAME)
    assert info.value.retry_after is not None
    assert 110 < info.value.retry_after <= 120


def test_judge_429_falls_back_on_reset_delta() -> None:
    with pytest.raises(RateLimitedError) as info:
        judge(make_response(429, headers={"X-RateLimit-Reset": "42"}), connector=NAME)
    assert info.value.retry_after == 42.0


def test_judge_429_falls_back_on_reset_epoch() -> None:
    reset = int(time.time()) + 60
    with pytest.raises(RateLimitedError) as info:
        judge(make_response(429, headers={"X-RateLimit-Reset": str(reset)}), connector=NAME)
    assert info.value.retry_after is not None
    assert 50 < info.value.retry_after <= 60


def test_judge_429_retry_after_wins_over_reset() -> None:
    headers = {"Retry-After": "3", "X-RateLimit-Reset": "60"}
    with pytest.raises(RateLimitedError) as info:
        judge(make_response(429, headers=headers), connector=NAME)
    assert info.value.retry_after == 3.0


def test_judge_429_with_unreadable_retry_after_uses_reset() -> None:
    headers = {"Retry-After": "later", "RateLimit-Reset": "9"}
    with pytest.raises(RateLimitedError) as info:
        judge(make_response(429, headers=headers), connector=NAME)
    assert info.value.retry_after == 9.0


def test_judge_429_without_any_wait() -> None:
    with pytest.raises(RateLimitedError) as info:
        judge(make_response(429), connector=NAME)
    assert info.value.retry_after is None


def test_judge_401_is_authentication_error() -> None:
    response = make_response(401, b'{"error": "bad token"}')
    with pytest.raises(AuthenticationError) as info:
        judge(response, connector=NAME)
    err = info.value
    assert not isinstance(err, RetriableError | FatalError)
    assert err.status == 401
    assert err.connector == NAME
    assert err.response is response
    assert NAME in str(err) and "401" in str(err)


@pytest.mark.parametrize(
    ("status", "maybe_applied"),
    [(408, False), (503, False), (500, True), (502, True), (504, True)],
)
def test_judge_retriable_statuses(status: int, maybe_applied: bool) -> None:
    response = make_response(status, b"upstream trouble")
    with pytest.raises(RetriableError) as info:
        judge(response, connector=NAME)
    err = info.value
    assert type(err) is RetriableError
    assert err.maybe_applied is maybe_applied
    assert err.status == status
    assert err.response is response
    assert err.retry_after is None
    assert f"{NAME} answered {status}" in str(err)
    assert "upstream trouble" in str(err)


def test_judge_503_carries_the_providers_retry_after() -> None:
    with pytest.raises(RetriableError) as info:
        judge(make_response(503, headers={"Retry-After": "11"}), connector=NAME)
    assert info.value.retry_after == 11.0
    assert info.value.maybe_applied is False


def test_judge_5xx_ignores_reset_header_as_a_wait() -> None:
    with pytest.raises(RetriableError) as info:
        judge(make_response(502, headers={"X-RateLimit-Reset": "30"}), connector=NAME)
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [400, 402, 403, 404, 405, 409, 410, 413, 422, 451, 499])
def test_judge_other_4xx_is_fatal(status: int) -> None:
    response = make_response(status, b"no such thing")
    with pytest.raises(FatalError) as info:
        judge(response, connector=NAME)
    err = info.value
    assert err.status == status
    assert err.connector == NAME
    assert err.response is response
    assert f"{NAME} answered {status}" in str(err)
    assert "no such thing" in str(err)


@pytest.mark.parametrize("status", [400, 404, 408, 500, 502])
def test_judge_excerpt_is_bounded(status: int) -> None:
    body = "A" * 150 + "B" * 10 + "TAIL-MUST-NOT-APPEAR" + "C" * 5000
    with pytest.raises(ProviderError) as info:
        judge(make_response(status, body), connector=NAME)
    message = str(info.value)
    prefix = f"{NAME} answered {status}: "
    assert message.startswith(prefix)
    assert message.endswith(info.value.context())
    excerpt = message[len(prefix) :].removesuffix(info.value.context())
    assert excerpt == "A" * 150 + "B" * 10 + "..."
    assert "TAIL" not in message
    assert len(excerpt) <= 163


def test_judge_short_excerpt_is_whole_and_whitespace_is_collapsed() -> None:
    with pytest.raises(FatalError) as info:
        judge(make_response(400, "bad\n\n   request\t here  "), connector=NAME)
    assert (
        str(info.value)
        == f"{NAME} answered 400: bad request here [{NAME}: status 400, not applied]"
    )


def test_judge_excerpt_of_exactly_the_limit_has_no_ellipsis() -> None:
    body = "x" * 160
    with pytest.raises(FatalError) as info:
        judge(make_response(422, body), connector=NAME)
    assert str(info.value).endswith(f": {body} [{NAME}: status 422, not applied]")


def test_judge_rate_limit_and_auth_messages_quote_no_body() -> None:
    for status, kind in ((429, RateLimitedError), (401, AuthenticationError)):
        with pytest.raises(kind) as info:
            judge(make_response(status, "token=hunter2"), connector=NAME)
        assert "hunter2" not in str(info.value)


# --- parse_json -------------------------------------------------------------------------------


def test_parse_json_reads_the_body() -> None:
    assert parse_json(make_response(200, b'{"id": "m1", "n": [1, 2]}'), connector=NAME) == {
        "id": "m1",
        "n": [1, 2],
    }
    assert parse_json(make_response(200, b"[]"), connector=NAME) == []
    assert parse_json(make_response(200, b"null"), connector=NAME) is None


def test_parse_json_empty_body_is_none() -> None:
    assert parse_json(make_response(204, b""), connector=NAME) is None
    assert parse_json(make_response(200, b""), connector=NAME) is None


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"{not json", b"   ", b"\xff\xfe\x00"])
def test_parse_json_garbage_is_retriable_and_maybe_applied(body: bytes) -> None:
    response = make_response(201, body)
    with pytest.raises(RetriableError) as info:
        parse_json(response, connector=NAME)
    err = info.value
    assert type(err) is RetriableError
    assert err.maybe_applied is True
    assert err.status == 201
    assert err.connector == NAME
    assert err.response is response
    assert NAME in str(err) and "201" in str(err)
    assert err.__cause__ is None
    assert err.__suppress_context__ is True


# --- send against responses -------------------------------------------------------------------


def test_send_returns_a_good_answer(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(URL, json={"ok": True}, status=201)
    response = send(
        "POST",
        URL,
        connector=NAME,
        session=session,
        json={"a": 1},
        params={"q": "x"},
        headers={"X-Test": "1"},
    )
    assert response.status_code == 201
    assert response.json() == {"ok": True}
    request = rsps.calls[0].request
    assert request.url == URL + "?q=x"
    assert request.headers["X-Test"] == "1"
    assert request.body == b'{"a": 1}'


def test_send_does_not_follow_redirects(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(URL, status=302, headers={"Location": "https://elsewhere.example.test/"})
    response = send("GET", URL, connector=NAME, session=session, judged=False)
    assert response.status_code == 302
    assert len(rsps.calls) == 1


def test_send_judges_the_answer(rsps: responses.RequestsMock, session: requests.Session) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "4"}, body="busy")
    with pytest.raises(RateLimitedError) as info:
        send("GET", URL, connector=NAME, session=session)
    assert info.value.retry_after == 4.0
    assert info.value.response is not None
    assert info.value.response.status_code == 429


def test_send_bare_connection_error_is_assumed_maybe_applied(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    # Nothing says the connection was never made: the request may have been written.
    rsps.post(URL, body=requests.exceptions.ConnectionError("Connection reset by peer"))
    with pytest.raises(RetriableError) as info:
        send("POST", URL, connector=NAME, session=session)
    err = info.value
    assert err.maybe_applied is True
    assert err.status is None
    assert err.response is None
    assert str(err) == (
        f"{NAME} dropped the connection (ConnectionError). "
        f"[{NAME}: no answer, may have been applied]"
    )
    assert err.__cause__ is None


def test_send_connection_refused_is_not_applied(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    # What requests raises when urllib3 cannot open the connection.
    refused = NewConnectionError(None, "Failed to establish a new connection: Connection refused")  # type: ignore[arg-type]
    exc = requests.exceptions.ConnectionError(MaxRetryError(None, URL, refused))  # type: ignore[arg-type]
    rsps.post(URL, body=exc)
    with pytest.raises(RetriableError) as info:
        send("POST", URL, connector=NAME, session=session)
    err = info.value
    assert err.maybe_applied is False
    assert (
        str(err)
        == f"{NAME} could not be reached (ConnectionError). [{NAME}: no answer, not applied]"
    )


def test_send_connection_error_chained_through_cause_is_not_applied(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    exc = requests.exceptions.ConnectionError("wrapped")
    exc.__cause__ = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    rsps.get(URL, body=exc)
    with pytest.raises(RetriableError) as info:
        send("GET", URL, connector=NAME, session=session)
    assert info.value.maybe_applied is False


def test_send_self_referencing_exception_does_not_loop(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    exc = requests.exceptions.ConnectionError()
    exc.args = (exc,)
    rsps.get(URL, body=exc)
    with pytest.raises(RetriableError) as info:
        send("GET", URL, connector=NAME, session=session)
    assert info.value.maybe_applied is True


def test_send_read_timeout_is_maybe_applied(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(RetriableError) as info:
        send("POST", URL, connector=NAME, session=session)
    err = info.value
    assert type(err) is RetriableError
    assert err.maybe_applied is True
    assert str(err) == (
        f"{NAME} did not answer within the timeout (ReadTimeout). "
        f"[{NAME}: no answer, may have been applied]"
    )


def test_send_connect_timeout_is_not_applied(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(RetriableError) as info:
        send("POST", URL, connector=NAME, session=session)
    assert info.value.maybe_applied is False
    assert str(info.value) == (
        f"{NAME} did not answer within the timeout (ConnectTimeout). "
        f"[{NAME}: no answer, not applied]"
    )


def test_send_passes_timeout_and_auth(
    rsps: responses.RequestsMock, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    original = session.request

    def spy(*args: Any, **kwargs: Any) -> requests.Response:
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(session, "request", spy)
    rsps.get(URL, json={})
    auth = requests.auth.HTTPBasicAuth("u", "p")
    send("GET", URL, connector=NAME, session=session, auth=auth, timeout=(1.0, 2.0))
    assert seen["timeout"] == (1.0, 2.0)
    assert seen["auth"] is auth
    assert seen["allow_redirects"] is False
    assert rsps.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_send_default_timeout_is_bounded(
    rsps: responses.RequestsMock, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    original = session.request

    def spy(*args: Any, **kwargs: Any) -> requests.Response:
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(session, "request", spy)
    rsps.get(URL, json={})
    send("GET", URL, connector=NAME, session=session)
    connect, read = seen["timeout"]
    assert 0 < connect < float("inf")
    assert 0 < read < float("inf")


@pytest.mark.parametrize("url", ["not-a-url", "ftp://provider.example.test/x", "http://"])
def test_send_invalid_url_is_not_reported_as_maybe_applied(
    url: str, session: requests.Session
) -> None:
    with pytest.raises(FatalError) as info:
        send("GET", url, connector=NAME, session=session)
    assert getattr(info.value, "maybe_applied", False) is False
    assert "invalid URL" in str(info.value)


# --- send against real sockets ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_send_to_a_closed_port_is_not_applied(session: requests.Session) -> None:
    port = _free_port()  # bound, then closed: nothing listens there
    with pytest.raises(RetriableError) as info:
        send("POST", f"http://127.0.0.1:{port}/v1/x", connector=NAME, session=session, json={})
    err = info.value
    assert err.maybe_applied is False
    assert (
        str(err)
        == f"{NAME} could not be reached (ConnectionError). [{NAME}: no answer, not applied]"
    )
    assert err.__cause__ is None


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1; connections sit in its backlog until accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def test_send_real_read_timeout_is_maybe_applied(
    listener: socket.socket, session: requests.Session
) -> None:
    port = listener.getsockname()[1]
    with pytest.raises(RetriableError) as info:
        send(
            "POST",
            f"http://127.0.0.1:{port}/v1/x",
            connector=NAME,
            session=session,
            json={"a": 1},
            timeout=(5.0, 0.2),
        )
    assert info.value.maybe_applied is True
    assert "did not answer within the timeout" in str(info.value)


def test_send_connection_dropped_after_request_is_maybe_applied(
    listener: socket.socket, session: requests.Session
) -> None:
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            received.append(conn.recv(65536))
        # closed without an answer

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    try:
        with pytest.raises(RetriableError) as info:
            send(
                "POST",
                f"http://127.0.0.1:{port}/v1/x",
                connector=NAME,
                session=session,
                json={"a": 1},
                timeout=(5.0, 5.0),
            )
    finally:
        thread.join(10)
    assert received and received[0].startswith(b"POST /v1/x")
    assert info.value.maybe_applied is True
    assert str(info.value).startswith(f"{NAME} dropped the connection")


# --- http_session -----------------------------------------------------------------------------


@pytest.fixture
def fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[requests.Session]]:
    """No process session yet; yields the sessions made in the test, closed after it."""
    made: list[requests.Session] = []
    monkeypatch.setattr(http, "_session", None)
    original = requests.Session

    class Tracked(original):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(requests, "Session", Tracked)
    yield made
    for s in made:
        s.close()


def test_http_session_is_one_per_process(fresh_sessions: list[requests.Session]) -> None:
    first = http_session()
    assert http_session() is first
    assert isinstance(first, requests.Session)
    assert fresh_sessions == [first]


def test_http_session_has_no_hidden_retries(fresh_sessions: list[requests.Session]) -> None:
    session = http_session()
    for url in ("http://provider.example.test/", "https://provider.example.test/"):
        adapter = session.get_adapter(url)
        assert isinstance(adapter, HTTPAdapter)
        retries = adapter.max_retries
        assert retries.total == 0
    assert session.headers["User-Agent"] == USER_AGENT


def test_http_session_is_forgotten_after_fork(fresh_sessions: list[requests.Session]) -> None:
    parents = http_session()
    http._forget_session()  # what the fork hook runs in a child (tests/unit/test_forks.py)
    mine = http_session()
    assert mine is not parents
    assert http_session() is mine


def test_send_uses_the_process_session_by_default(
    fresh_sessions: list[requests.Session], rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, json={"x": 1})
    send("GET", URL, connector=NAME)
    assert rsps.calls[0].request.headers["User-Agent"] == USER_AGENT
    assert len(fresh_sessions) == 1
