"""redaction: secret-looking names in any case style, URLs masked in user-info and query string
(examples, then properties over 1,000 generated cases each)."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spark_integrations.redaction import (
    MASK,
    REDACTED,
    hide_urls,
    is_secret_name,
    mask_url,
    redact,
)
from spark_integrations.settings import hide_password

SECRET_NAMES = [
    "clientSecret", "client_secret", "CLIENT_SECRET", "client-secret", "ClientSecret",
    "refresh_token", "refreshToken", "RefreshToken", "REFRESH-TOKEN", "accessToken",
    "access_token", "secret_key", "secretKey", "SECRET_KEY", "X-Api-Key", "x_api_key",
    "apiKey", "APIKey", "APIKEY", "api-key", "apikey", "password", "Password", "dbPassword",
    "db_pass", "passwd", "token", "Token", "id_token", "csrfToken", "bearer", "Authorization",
    "proxy-authorization", "signature", "sig", "cookie", "Set-Cookie", "private_key",
    "privateKey", "credentials", "awsSecretAccessKey", "aws_secret_access_key", "webhook_secret",
    "secrets", "key", "basic_auth", "sessionToken", "x-amz-security-token", "jwt", "passphrase",
    "session_id", "sessionId", "SESSION_ID", "session-id", "sessionid", "SESSIONID", "JSESSIONID",
    "PHPSESSID", "client_assertion", "clientAssertion", "CLIENT_ASSERTION", "clientassertion",
    "code_verifier", "codeVerifier", "codeverifier", "oauth_verifier", "passcode", "Passcode",
    "user_passcode", "auth_code", "authCode", "authorization_code", "device_code",
    "verification_code", "security_code", "mfa_code", "recovery_code", "backup_code",
]  # fmt: skip
PLAIN_NAMES = [
    "page_token", "pageToken", "nextPageToken", "next_token", "NextToken", "max_tokens",
    "maxTokens", "total_tokens", "sync_token", "continuation_token", "idempotency_key",
    "idempotencyKey", "primary_key", "sort_key", "text", "count", "connection_id", "action",
    "sync_id", "name", "email", "user", "username", "base_url", "token_url", "token_type",
    "author", "authored_at", "passenger", "keyboard", "id", "cursor", "tokenizer",
    # "code" alone names a secret only as a URL's query parameter (mask_url), not as a key.
    "code", "Code", "zip_code", "zipCode", "ZIP_CODE", "country_code", "countryCode",
    "error_code", "errorCode", "status_code", "statusCode", "postal_code", "currency_code",
    "language_code", "response_code", "promo_code", "user_code", "code_challenge",
    "code_challenge_method", "client_assertion_type", "state", "session_name", "session_count",
    "sessions", "verified",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names_in_every_case_style(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_names_that_are_not_secrets(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw1@host:6379/0", f"redis://:{MASK}@host:6379/0"),
        ("amqp://guest:pw2@rabbit:5672//", f"amqp://guest:{MASK}@rabbit:5672//"),
        ("https://ghp_tok3n@github.com/x", f"https://{MASK}@github.com/x"),
        ("postgresql://u:p%40ss@h/db?sslmode=require", f"postgresql://u:{MASK}@h/db?sslmode=require"),
        ("postgresql://h/db?password=pw4&application_name=x", f"postgresql://h/db?password={MASK}&application_name=x"),
        ("https://api.example/v1?key=AIza5&q=1", f"https://api.example/v1?key={MASK}&q=1"),
        ("https://x/?X-Amz-Signature=ab&X-Amz-Credential=cd", f"https://x/?X-Amz-Signature={MASK}&X-Amz-Credential={MASK}"),
        ("https://u:p@w:d@host/", f"https://u:{MASK}@host/"),
        ("sqlite:////tmp/store.db", "sqlite:////tmp/store.db"),
        ("redis+socket:///tmp/redis.sock", "redis+socket:///tmp/redis.sock"),
        ("https://example.com/a?page_token=abc", "https://example.com/a?page_token=abc"),
        # An OAuth redirect's authorisation code is masked; its state is not a secret.
        ("https://app.example/cb?code=Ac0de&state=st1", f"https://app.example/cb?code={MASK}&state=st1"),
        ("https://app.example/cb?state=st1&CODE=Ac0de", f"https://app.example/cb?state=st1&CODE={MASK}"),
        ("https://x/?session_id=s1&client_assertion=eyJ1&code_verifier=v1&passcode=42",
         f"https://x/?session_id={MASK}&client_assertion={MASK}&code_verifier={MASK}&passcode={MASK}"),
        ("https://x/?zip_code=75001&country_code=FR&error_code=E1&status_code=500&code_challenge=c",
         "https://x/?zip_code=75001&country_code=FR&error_code=E1&status_code=500&code_challenge=c"),
    ],
)  # fmt: skip
def test_urls_are_masked_in_user_info_and_query(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert hide_password(url) == shown


def test_an_unparsable_url_is_not_shown() -> None:
    assert mask_url("http://[::1") == "(an unparsable URL)"


def test_urls_inside_text_are_masked() -> None:
    text = "could not reach redis://:pw5@h:1/0 (refused); also 'https://x/?token=t6'."
    shown = hide_urls(text)
    assert "pw5" not in shown and "t6" not in shown
    assert shown.startswith("could not reach redis://:***@h:1/0 (refused)")


def test_redact_masks_names_and_urls_at_any_depth() -> None:
    value = {
        "params": {"clientSecret": "s1", "nested": [{"refreshToken": "s2"}], "text": "hi"},
        "link": "https://u:s3@host/?api_key=s4",
        "accessToken": {"any": "s5"},
    }
    out = redact(value)
    assert out["params"]["clientSecret"] == REDACTED
    assert out["params"]["nested"][0]["refreshToken"] == REDACTED
    assert out["params"]["text"] == "hi"
    assert out["accessToken"] == REDACTED
    for secret in ("s1", "s2", "s3", "s4", "s5"):
        assert secret not in repr(out)


def test_code_is_masked_in_urls_and_kept_as_a_key() -> None:
    """A dead letter's params keep their codes (zip, country, error, status, a bare ``code``),
    while a URL among them shows no authorisation code and the OAuth secrets are masked."""
    params = {
        "code": 404, "zip_code": "75001", "country_code": "FR", "error_code": "E1",
        "status_code": 500, "state": "st1", "session_id": "Sid9", "client_assertion": "eyJa9",
        "code_verifier": "Ver9", "passcode": "4242",
        "callback": "https://app.example/cb?code=Ac0de9&state=st1",
    }  # fmt: skip
    out = redact({"params": params})["params"]
    assert {k: out[k] for k in ("code", "zip_code", "country_code", "error_code")} == {
        "code": 404, "zip_code": "75001", "country_code": "FR", "error_code": "E1"
    }  # fmt: skip
    assert out["status_code"] == 500 and out["state"] == "st1"
    for key in ("session_id", "client_assertion", "code_verifier", "passcode"):
        assert out[key] == REDACTED
    assert out["callback"] == f"https://app.example/cb?code={MASK}&state=st1"
    assert hide_urls("redirected to https://app.example/cb?code=Ac0de9 (refused)") == (
        f"redirected to https://app.example/cb?code={MASK} (refused)"
    )
    for secret in ("Sid9", "eyJa9", "Ver9", "4242", "Ac0de9"):
        assert secret not in repr(out)
    assert is_secret_name("code", query=True) and not is_secret_name("code")
    assert not is_secret_name("zip_code", query=True)


# --- properties ---------------------------------------------------------------------------------

SECRET_WORDS = [
    ["client", "secret"], ["refresh", "token"], ["access", "token"], ["secret", "key"],
    ["x", "api", "key"], ["api", "key"], ["password"], ["private", "key"], ["auth", "token"],
    ["session", "token"], ["webhook", "secret"], ["db", "password"], ["credentials"],
    ["secret"], ["bearer", "token"], ["signing", "key"], ["session", "id"],
    ["client", "assertion"], ["code", "verifier"], ["passcode"], ["auth", "code"],
]  # fmt: skip
PLAIN_WORDS = [
    ["page", "token"], ["next", "page", "token"], ["max", "tokens"], ["idempotency", "key"],
    ["primary", "key"], ["connection", "id"], ["text"], ["sync", "token"], ["user", "name"],
    ["base", "url"], ["token", "type"], ["sort", "key"], ["continuation", "token"],
    ["code"], ["zip", "code"], ["country", "code"], ["error", "code"], ["status", "code"],
    ["code", "challenge"], ["client", "assertion", "type"], ["state"], ["session", "name"],
]  # fmt: skip


def styled(words: list[str], style: str, prefix: list[str]) -> str:
    """``words`` written in one of the case styles seen in APIs."""
    words = prefix + words
    if style == "snake":
        return "_".join(words)
    if style == "kebab":
        return "-".join(words)
    if style == "upper":
        return "_".join(words).upper()
    if style == "camel":
        return words[0] + "".join(w.capitalize() for w in words[1:])
    if style == "pascal":
        return "".join(w.capitalize() for w in words)
    if style == "header":
        return "-".join(w.capitalize() for w in words)
    return ".".join(words)


STYLE = st.sampled_from(["snake", "kebab", "upper", "camel", "pascal", "header", "dotted"])
PREFIX = st.lists(st.sampled_from(["x", "my", "oauth", "provider", "github", "stripe"]), max_size=2)


@settings(max_examples=1000, deadline=None)
@given(words=st.sampled_from(SECRET_WORDS), style=STYLE, prefix=PREFIX)
def test_secret_names_are_recognised_in_any_case_style(
    words: list[str], style: str, prefix: list[str]
) -> None:
    name = styled(words, style, prefix)
    assert is_secret_name(name), name
    assert redact({name: "v4lue"}) == {name: REDACTED}
    assert redact({"params": [{name: "v4lue"}]}) == {"params": [{name: REDACTED}]}


@settings(max_examples=1000, deadline=None)
@given(words=st.sampled_from(PLAIN_WORDS), style=STYLE)
def test_plain_names_are_kept_in_any_case_style(words: list[str], style: str) -> None:
    name = styled(words, style, [])
    assert not is_secret_name(name), name
    assert redact({name: "v4lue"}) == {name: "v4lue"}


HOST = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True)
USER = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
SECRET_VALUE = st.text(st.characters(exclude_categories=("Cs",)), min_size=6, max_size=20).map(
    lambda s: "S3cr3t" + s
)


@settings(max_examples=1000, deadline=None)
@given(
    scheme=st.sampled_from(["https", "http", "redis", "rediss", "amqp", "postgresql+psycopg"]),
    user=USER,
    password=SECRET_VALUE,
    with_user=st.booleans(),
    host=HOST,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=st.from_regex(r"(/[a-z0-9._-]{0,8}){0,3}", fullmatch=True),
    query_name=st.one_of(
        st.sampled_from(
            ["password", "token", "api_key", "clientSecret", "X-Amz-Signature", "code", "Code"]
        ),
        st.sampled_from(SECRET_WORDS).map(lambda w: "_".join(w)),
    ),
    query_secret=SECRET_VALUE,
    other=st.sampled_from(["", "&page=2", "&sslmode=require", "&a=b&c"]),
)
def test_no_url_credential_survives_masking(
    scheme: str,
    user: str,
    password: str,
    with_user: bool,
    host: str,
    port: int | None,
    path: str,
    query_name: str,
    query_secret: str,
    other: str,
) -> None:
    userinfo = (quote(user, safe="") + ":" if with_user else ":") + quote(password, safe="")
    hostport = host + (f":{port}" if port else "")
    url = (
        f"{scheme}://{userinfo}@{hostport}{path}?"
        f"{quote(query_name)}={quote(query_secret, safe='')}{other}"
    )
    for shown in (mask_url(url), hide_password(url), hide_urls(f"failed: {url} (refused)")):
        for secret in (password, quote(password, safe=""), query_secret):
            assume(secret not in host + path + other + user)
            assert secret not in shown
        assert quote(query_secret, safe="") not in shown
        assert host in shown
    assert urlsplit(mask_url(url)).hostname == host.lower()


@settings(max_examples=1000, deadline=None)
@given(url=st.text(max_size=60), prefix=st.sampled_from(["", "https://", "redis://:p@"]))
def test_masking_never_raises_and_hides_any_password(url: str, prefix: str) -> None:
    text = prefix + url
    shown = mask_url(text)
    assert isinstance(hide_urls(text), str)
    try:
        password = urlsplit(text).password
    except ValueError:
        return
    if password:
        assert urlsplit(shown).password in (None, MASK)


def test_doctor_checks_show_urls_masked() -> None:
    """doctor's and the gateway log's details of an unreachable Redis mask both places."""
    from spark_integrations.checks import redis_check

    check = redis_check(
        "broker",
        "redis://fleet:Upw1@127.0.0.1:1/0?password=Qpw2",
        need_noeviction=True,
        timeout=0.5,
    )
    assert not check.ok
    assert "Upw1" not in check.detail and "Qpw2" not in check.detail
    assert check.detail.startswith("redis://fleet:***@127.0.0.1:1/0?password=*** is unreachable")
