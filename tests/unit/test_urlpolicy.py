"""connectors.urlpolicy: https only (http to loopback or to hosts the operator allows), no
user-info, no fragment, origins compared as RFC 6454 does (examples, 1,000-case properties)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_integrations.connectors import urlpolicy
from spark_integrations.connectors.urlpolicy import check_url, is_loopback, same_origin, url_problem
from spark_integrations.errors import UsageError


@pytest.fixture(autouse=True)
def no_http_hosts() -> Iterator[None]:
    urlpolicy.allow_http_hosts(())
    yield
    urlpolicy.allow_http_hosts(())


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com",
        "https://api.example.com/v1/",
        "https://api.example.com:8443/x",
        "http://127.0.0.1:8080",
        "http://127.9.9.9/x",
        "http://localhost:1/a",
        "http://[::1]:9/",
        "http://LocalHost:8080/",
    ],
)
def test_accepted(url: str) -> None:
    assert url_problem(url, query=False) is None
    check_url("base_url", url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://api.example.com", "must use https://"),
        ("http://10.0.0.1/", "must use https://"),
        # Names under .localhost go to DNS unless systemd-resolved answers them: not loopback.
        ("http://api.localhost/", "must use https://"),
        ("http://x.localhost:8080/", "must use https://"),
        ("http://localhost./", "must use https://"),
        ("http://localhost.example.com/", "must use https://"),
        ("http://127.1/", "must use https://"),
        ("http://[::ffff:127.0.0.1]/", "must use https://"),
        ("ftp://api.example.com", "must be an https:// URL"),
        ("https://", "must be an https:// URL"),
        ("api.example.com", "must be an https:// URL"),
        ("https://user:pw@api.example.com", "must not hold a user name or password"),
        ("https://token@api.example.com", "must not hold a user name or password"),
        ("https://api.example.com/#frag", "must not hold a fragment"),
        ("https://api.example.com/?a=1", "must not hold a query string"),
        ("https://api.example.com/ x", "must not hold spaces or control characters"),
        ("https://api.example.com/\nx", "must not hold spaces or control characters"),
        ("https://api.example.com:99999/", "is not a valid URL"),
        ("https://[::1/", "is not a valid URL"),
        ("", "must be a URL"),
    ],
)
def test_refused_base_urls(url: str, problem: str) -> None:
    found = url_problem(url, query=False)
    assert found is not None and found.startswith(problem)
    with pytest.raises(UsageError) as info:
        check_url("base_url", url)
    assert str(info.value).startswith(f"config base_url {problem}")
    assert "pw" not in str(info.value) and "token@" not in str(info.value)


def test_token_and_authorize_urls_may_hold_a_query() -> None:
    check_url("token_url", "https://auth.example.com/token?tenant=x")
    check_url("authorize_url", "https://auth.example.com/authorize?prompt=consent")


def test_the_operator_allows_named_hosts_over_http() -> None:
    with pytest.raises(UsageError, match="SPARK_INTEGRATIONS_ALLOW_HTTP_HOSTS"):
        check_url("base_url", "http://sandbox.internal:8080")
    check_url("base_url", "http://sandbox.internal:8080", http_hosts={"sandbox.internal"})
    urlpolicy.allow_http_hosts(["Sandbox.Internal."])
    check_url("token_url", "http://sandbox.internal/token")
    with pytest.raises(UsageError):
        check_url("base_url", "http://other.internal")


def test_loopback() -> None:
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert is_loopback("LOCALHOST") and is_loopback("127.255.255.254")
    assert not is_loopback("localhost.example.com") and not is_loopback("10.0.0.1")
    assert not is_loopback(None) and not is_loopback("")


@pytest.mark.parametrize(
    "host", ["x.localhost", "api.localhost", "a.b.localhost", "localhost.", "x.localhost.",
             "localhostx", "127.0.0.1.nip.io", "::2", "::ffff:127.0.0.1", "128.0.0.1"],
)  # fmt: skip
def test_only_localhost_itself_and_loopback_addresses_are_loopback(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UsageError, match="must use https://"):
        check_url("token_url", f"http://{'[' + host + ']' if ':' in host else host}/token")


@pytest.mark.parametrize(
    ("url", "other", "same"),
    [
        ("https://a.test/x?p=2", "https://a.test/base", True),
        ("https://A.test:443/x", "https://a.test", True),
        ("http://a.test:80/x", "http://a.test/", True),
        ("https://a.test:8443/x", "https://a.test/", False),
        ("http://a.test/x", "https://a.test/", False),
        ("https://b.test/x", "https://a.test/", False),
        ("https://a.test.evil/x", "https://a.test/", False),
        ("https://u:p@a.test/x", "https://a.test/", False),
        ("https://a.test@evil.test/x", "https://a.test/", False),
        ("//evil.test/x", "https://a.test/", False),
        ("https://[::1/x", "https://a.test/", False),
    ],
)
def test_same_origin(url: str, other: str, same: bool) -> None:
    assert same_origin(url, other) is same


HOST = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z]{2,6}){1,2}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9-]{0,12}\.localhost\.?", fullmatch=True),
    st.sampled_from(
        ["localhost", "LocalHost", "localhost.", "127.0.0.1", "127.3.2.1", "[::1]", "10.1.2.3",
         "sandbox.internal", "[::ffff:127.0.0.1]", "127.1"]
    ),
)  # fmt: skip


def loopback(host: str) -> bool:
    """The policy's loopback, written out: ``localhost`` itself, 127.0.0.0/8 and ::1."""
    if host == "localhost" or host == "::1":
        return True
    octets = host.split(".")
    return (
        len(octets) == 4
        and octets[0] == "127"
        and all(o.isdigit() and int(o) < 256 and str(int(o)) == o for o in octets)
    )


PIECE = st.sampled_from(["", "/", "/v1", "?q=1", "#f", "@evil.test", ":8443", " ", "\t", "%00"])
USERINFO = st.sampled_from(["", "user@", "user:Pw7x@", ":Pw7x@", "Tk9q@"])


@settings(max_examples=1000, deadline=None)
@given(
    scheme=st.sampled_from(["https", "http", "HTTP", "ftp", "javascript", ""]),
    userinfo=USERINFO,
    host=HOST,
    pieces=st.lists(PIECE, max_size=3),
    allowed=st.sets(st.sampled_from(["sandbox.internal", "api.example.com"]), max_size=2),
)
def test_an_accepted_url_always_meets_the_policy(
    scheme: str, userinfo: str, host: str, pieces: list[str], allowed: set[str]
) -> None:
    url = f"{scheme}://{userinfo}{host}{''.join(pieces)}"
    for key in ("base_url", "token_url", "authorize_url"):
        try:
            check_url(key, url, http_hosts=allowed)
        except UsageError as exc:
            assert str(exc).startswith(f"config {key} ") and "\n" not in str(exc)
            assert "Pw7x" not in str(exc) and "Tk9q" not in str(exc)
            continue
        parts = urlsplit(url)
        assert parts.scheme == "https" or (
            parts.scheme == "http" and (loopback(parts.hostname) or parts.hostname in allowed)
        )
        assert "@" not in parts.netloc and not parts.fragment and "#" not in url
        assert parts.hostname and not any(c.isspace() for c in url)
        assert key != "base_url" or not parts.query
        assert same_origin(url + "/next?page=2" if not parts.query else url, url)
