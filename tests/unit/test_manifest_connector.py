"""Declared connectors at work, against a provider mocked with ``responses``: auth kinds applied
in order, bodies encoded as declared, error rules (2xx included), tier budgets and buckets."""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, unquote

import pytest
import requests
import responses

from spark_integrations.connectors.base import Budget, Connector
from spark_integrations.connectors.encoding import form_pairs
from spark_integrations.connectors.manifest import load_manifest
from spark_integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    FatalError,
    RateLimitedError,
    RetriableError,
)

HERE = Path(__file__).parent / "manifests"
CHAT_URL = "https://acme.chat.test/api"
NOTES_URL = "https://api.notes.test/v1"
TOKEN = "xoxb-secret-token-1"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def chat(session: requests.Session, secrets: dict[str, str] | None = None, **kw: str) -> Connector:
    cls = load_manifest(HERE / "chat.yaml")
    return cls({"workspace": "acme"}, {"bot_token": TOKEN} if secrets is None else secrets,
               session=session, scope="c1", **kw)  # fmt: skip


def notes(session: requests.Session) -> Connector:
    cls = load_manifest(HERE / "notes.toml")
    return cls({}, {"secret_key": "sk_test_1"}, session=session, scope="c2")


def declared(tmp_path: Path, text: str) -> type[Connector]:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_manifest(path)


# --- auth kinds ----------------------------------------------------------------------------------


def test_bearer_with_its_scheme(rsps: responses.RequestsMock, session: requests.Session) -> None:
    rsps.get(CHAT_URL + "/users/u1", json={"ok": True})
    chat(session).run_action("get_user", {"user": "u1"})
    assert rsps.calls[0].request.headers["Authorization"] == f"Bot {TOKEN}"


def test_kinds_are_tried_in_their_declared_order(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(CHAT_URL + "/users/u1", json={"ok": True})
    chat(session, {"api_key": "k-1"}).run_action("get_user", {"user": "u1"})
    headers = rsps.calls[0].request.headers
    assert headers["X-API-Key"] == "k-1" and "Authorization" not in headers
    both = chat(session, {"api_key": "k-1", "bot_token": TOKEN})
    assert (
        repr(both.auth())
        == "APIKeyAuthenticator(location='header', name='Authorization', prefix='Bot')"
    )


def test_no_credential_is_one_sentence_naming_the_kinds(session: requests.Session) -> None:
    with pytest.raises(
        AuthenticationError, match="holds no credentials for bearer, api_key, oauth2"
    ):
        chat(session, {}).auth()


def test_api_key_in_the_query(
    tmp_path: Path, rsps: responses.RequestsMock, session: requests.Session
) -> None:
    cls = declared(tmp_path, """\
        name: q
        base_url: https://q.test
        auth: {api_key: {secret: key, query: api_key}}
        actions: [{name: ping, method: GET, path: /ping}]
        """)  # fmt: skip
    rsps.get("https://q.test/ping", json={})
    cls({}, {"key": "k-1"}, session=session).run_action("ping", {})
    assert rsps.calls[0].request.url == "https://q.test/ping?api_key=k-1"


def test_basic_with_an_empty_password(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(NOTES_URL + "/notes/n1", json={"id": "n1"})
    notes(session).run_action("get_note", {"id": "n1"})
    sent = rsps.calls[0].request.headers["Authorization"]
    assert base64.b64decode(sent.split()[1]) == b"sk_test_1:"


SECRET_URL = """\
    name: hook
    auth: {secret_url: {secret: webhook_url}}
    actions: [{name: send, method: POST, path: /, params: {content: string}}]
    """


def test_secret_url_is_the_base_and_never_shown(
    tmp_path: Path, rsps: responses.RequestsMock, session: requests.Session
) -> None:
    cls = declared(tmp_path, SECRET_URL)
    assert cls.secret_keys == ("webhook_url",) and cls.direct_credentials == (("webhook_url",),)
    url = "https://hooks.test/api/webhooks/1/tok-secret"
    rsps.post(url, json={"id": "m"})
    client = cls({}, {"webhook_url": url}, session=session)
    assert client.run_action("send", {"content": "hi"}) == {"id": "m"}
    assert rsps.calls[0].request.url == url
    assert "tok-secret" not in repr(client) and client.auth() is None
    with pytest.raises(ConfigurationError, match="webhook_url must be an https:// URL") as info:
        cls({}, {"webhook_url": "http://hooks.test/api/webhooks/1/tok-secret"}, session=session)
    assert "tok-secret" not in str(info.value)


# --- bodies --------------------------------------------------------------------------------------


def test_form_pairs_nest_keys_and_index_lists() -> None:
    assert form_pairs(
        {"amount": 5, "metadata": {"a": 1, "b": {"c": "d"}}, "expand": ["x", "y"], "on": True,
         "off": False, "empty": {}, "none": None}
    ) == [
        ("amount", "5"), ("metadata[a]", "1"), ("metadata[b][c]", "d"), ("expand[0]", "x"),
        ("expand[1]", "y"), ("on", "true"), ("off", "false"), ("empty", ""), ("none", ""),
    ]  # fmt: skip


def test_a_form_connector_sends_nested_form_bodies_and_queries(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(NOTES_URL + "/notes", json={"id": "n1"})
    rsps.get(NOTES_URL + "/notes/n1", json={"id": "n1"})
    client = notes(session)
    client.run_action(
        "create_note", {"text": "hi", "metadata": {"k": "v"}, "pinned": True}, idempotency_key="i-1"
    )
    sent = rsps.calls[0].request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.headers["Idempotency-Key"] == "i-1"
    assert parse_qsl(str(sent.body)) == [("text", "hi"), ("metadata[k]", "v"), ("pinned", "true")]
    client.run_action("get_note", {"id": "n1", "expand": ["customer"]})
    assert unquote(str(rsps.calls[1].request.url)).endswith("/notes/n1?expand[0]=customer")


def test_fixed_fields_action_body_and_result_path(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(CHAT_URL + "/chat.update", json={"ok": True})
    rsps.post(CHAT_URL + "/chat.postMessage", json={"ok": True, "message": {"ts": "1.2"}})
    client = chat(session)
    client.run_action("update_message", {"channel": "C", "ts": "1", "text": "x"})
    assert parse_qsl(str(rsps.calls[0].request.body)) == [
        ("channel", "C"), ("ts", "1"), ("text", "x"), ("as_user", "true"),
    ]  # fmt: skip
    assert client.run_action("post_message", {"channel": "C", "text": "hi"}) == {"ts": "1.2"}


# --- error rules ---------------------------------------------------------------------------------


def test_a_200_with_ok_false_is_classified(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    url = CHAT_URL + "/users/u1"
    rsps.get(url, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "7"})
    rsps.get(url, json={"ok": False, "error": "token_expired"})
    rsps.get(url, json={"ok": False, "error": "channel_not_found"})
    rsps.get(url, json={"ok": True, "user": {}})
    client = chat(session)
    with pytest.raises(RateLimitedError) as limited:
        client.run_action("get_user", {"user": "u1"})
    assert limited.value.retry_after == 7.0 and limited.value.status == 200
    assert str(limited.value).startswith("chat rate limited the request (ratelimited).")
    with pytest.raises(AuthenticationError, match=r"refused the credentials \(token_expired\)"):
        client.run_action("get_user", {"user": "u1"})
    with pytest.raises(FatalError, match=r"refused the request \(channel_not_found\)") as fatal:
        client.run_action("get_user", {"user": "u1"})
    assert TOKEN not in str(fatal.value)
    assert client.run_action("get_user", {"user": "u1"}) == {"ok": True, "user": {}}


def test_a_429_body_gives_the_wait_and_unmatched_answers_meet_the_generic_rules(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    url = CHAT_URL + "/users/u1"
    rsps.get(url, status=429, json={"message": "slow", "retry_after": 0.65, "global": True})
    rsps.get(url, status=429, json={"global": False}, headers={"Retry-After": "3"})
    rsps.get(url, status=503, body="down")
    client = chat(session)
    with pytest.raises(RateLimitedError) as body_wait:
        client.run_action("get_user", {"user": "u1"})
    assert body_wait.value.retry_after == 0.65
    with pytest.raises(RateLimitedError) as header_wait:
        client.run_action("get_user", {"user": "u1"})
    assert header_wait.value.retry_after == 3.0
    with pytest.raises(RetriableError) as down:
        client.run_action("get_user", {"user": "u1"})
    assert down.value.status == 503


def test_header_rules_and_error_objects(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    url = NOTES_URL + "/notes/n1"
    error = {"error": {"type": "api_error", "code": "x_failed", "message": "Try again."}}
    rsps.get(
        url, status=500, json=error, headers={"Stripe-Should-Retry": "true", "Retry-After": "2"}
    )
    rsps.get(url, status=409, json=error, headers={"Stripe-Should-Retry": "false"})
    lock = {"error": {"type": "invalid_request_error", "code": "lock_timeout"}}
    rsps.get(url, status=429, json=lock)
    client = notes(session)
    with pytest.raises(RetriableError) as retry:
        client.run_action("get_note", {"id": "n1"})
    assert retry.value.retry_after == 2.0 and retry.value.maybe_applied
    assert "(api_error: x_failed: Try again.)" in str(retry.value)
    with pytest.raises(
        FatalError, match=r"refused the request \(api_error: x_failed: Try again.\)"
    ):
        client.run_action("get_note", {"id": "n1"})
    with pytest.raises(RetriableError) as locked:
        client.run_action("get_note", {"id": "n1"})
    assert locked.value.retry_after == 1.0 and not isinstance(locked.value, RateLimitedError)


def test_unknown_outcome_and_ok_rules(
    tmp_path: Path, rsps: responses.RequestsMock, session: requests.Session
) -> None:
    cls = declared(tmp_path, """\
        name: odd
        base_url: https://odd.test
        errors:
          rules:
            - {when: {status: 504}, then: unknown}
            - {when: {status: 404, present: [gone]}, then: ok}
        actions: [{name: put, method: PUT, path: /x}]
        """)  # fmt: skip
    rsps.put("https://odd.test/x", status=504, body="gateway timeout")
    rsps.put("https://odd.test/x", status=404, json={"gone": "yes"})
    client = cls({}, {}, session=session)
    with pytest.raises(RetriableError) as unknown:
        client.run_action("put", {})
    assert unknown.value.maybe_applied
    assert "answered without saying whether the request was carried out" in str(unknown.value)
    assert client.run_action("put", {}) == {"gone": "yes"}


# --- budgets -------------------------------------------------------------------------------------


def test_tiers_add_their_budget_per_connection_app_or_route(session: requests.Session) -> None:
    client = chat(session)
    own = Budget("chat:c1", 5.0)
    assert client.budgets(client.get_action("get_user")) == (
        own, Budget("chat:c1:tier2", 0.33, None, "tier2"),
    )  # fmt: skip
    assert client.budgets(client.get_action("post_message")) == (
        own, Budget("chat:c1:route:post_message", 1.0, None, "posts"),
    )  # fmt: skip
    assert client.budgets(client.get_action("update_message")) == (own,)
    assert client.budgets(None) == (own,)
    app = load_manifest(HERE / "chat.yaml").tiers["shared"]
    assert app.key("chat", "c1", "shared", "x") == "chat:shared"


def test_a_route_budget_learns_under_the_providers_bucket(session: requests.Session) -> None:
    client = chat(session)
    post = client.get_action("post_message")
    budgets = client.budgets(post)
    answer = requests.Response()
    answer.headers["X-Bucket"] = "abcd1234"
    answer.headers["X-Left"] = "0"
    answer.headers["X-Reset-After"] = "1.25"
    learned = client.learning_budget(budgets, answer)
    assert learned == Budget("chat:c1:route:abcd1234", 1.0, None, "posts")
    # From then on, the route's requests draw from the bucket's budget.
    assert client.budgets(post)[-1].key == "chat:c1:route:abcd1234"
    hint = client.rate_limit_hint(answer)
    assert (hint.remaining, hint.reset_in, hint.bucket) == (0.0, 1.25, "abcd1234")
    # A new bucket for the route moves it again; a tier that is not a route ignores buckets.
    answer.headers["X-Bucket"] = "ffff"
    assert client.learning_budget(client.budgets(post), answer).key == "chat:c1:route:ffff"
    tiered = client.budgets(client.get_action("get_user"))
    assert client.learning_budget(tiered, answer) == tiered[-1]
    assert client.learning_budget(client.budgets(None), answer) == Budget("chat:c1", 5.0)


def limited(body: bytes) -> requests.Response:
    answer = requests.Response()
    answer.status_code = 429
    answer.headers["X-Bucket"] = "abcd"
    answer._content = body
    return answer


def test_a_global_limit_speaks_for_the_connections_budget(session: requests.Session) -> None:
    client = chat(session)
    budgets = client.budgets(client.get_action("post_message"))
    global_limit = limited(b'{"message": "slow", "retry_after": 1.5, "global": true}')
    assert client.learning_budget(budgets, global_limit) == Budget("chat:c1", 5.0)
    route_limit = limited(b'{"message": "slow", "retry_after": 1.5, "global": false}')
    assert client.learning_budget(budgets, route_limit) == Budget(
        "chat:c1:route:abcd", 1.0, None, "posts"
    )


def test_a_stream_path_takes_config_placeholders_and_params(
    tmp_path: Path, rsps: responses.RequestsMock, session: requests.Session
) -> None:
    cls = declared(tmp_path, """\
        name: scoped
        base_url: https://scoped.test
        config_keys: [org]
        streams:
          - name: repos
            path: /orgs/{org}/teams/{team}/repos
            params: {team: {required: true, type: string}, kind: string}
            primary_key: id
            pagination: {style: none}
        """)  # fmt: skip
    rsps.get("https://scoped.test/orgs/a%20b/teams/t%2F1/repos?kind=x", json=[{"id": 1}])
    client = cls({"org": "a b"}, {}, session=session)
    page = client.read_page("repos", params={"team": "t/1", "kind": "x"})
    assert page.records == [{"id": 1}] and page.finished
    with pytest.raises(ConfigurationError, match="needs config org"):
        cls({}, {}, session=session).read_page("repos", params={"team": "t"})
