"""connectors.base.Connector: call policy, config validation, authenticators and run_action."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import requests
import responses

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.auth import (
    BasicAuthenticator,
    BearerTokenAuthenticator,
    OAuth2Authenticator,
)
from spark_integrations.connectors.base import Budget, CallPolicy, Connector
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.connectors.streams import Stream
from spark_integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    FatalError,
    RateLimitedError,
    RetriableError,
    UsageError,
)

BASE = "https://sandbox.example.test"
API_KEY = "sk-live-DO-NOT-SHOW-1234"
PASSWORD = "pa55-DO-NOT-SHOW"


class PlainConnector(Connector):
    """A provider without OAuth nor an idempotency header; one GET takes a query."""

    name = "plain"
    default_base_url = "https://plain.example.test/api/"
    rate_limit = 2.5
    fleet_rate_limit = 50.0
    retry_attempts = 3
    retry_window = 120.0
    breaker_fail_max = 4
    breaker_reset_timeout = 15.0
    actions: ClassVar[tuple[Action, ...]] = (
        Action("create", "POST", "/things", params={"text": str}, idempotent=True),
        Action("search", "GET", "/things/{kind}", params={"kind": str}, optional={"q": str}),
        Action("remove", "DELETE", "/things/{id}", params={"id": str}),
    )


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def sandbox(
    session: requests.Session,
    secrets: dict[str, str] | None = None,
    **kwargs: Any,
) -> SandboxConnector:
    secrets = {"api_key": API_KEY} if secrets is None else secrets
    return SandboxConnector({"base_url": BASE}, secrets, session=session, **kwargs)


# --- policy -----------------------------------------------------------------------------------


def test_policy_defaults_of_the_sandbox() -> None:
    assert SandboxConnector.policy({}) == CallPolicy(
        rate_limit=100.0,
        rate_limit_burst=0.03,
        fleet_rate_limit=None,
        retry_attempts=8,
        retry_window=600.0,
        breaker_fail_max=5,
        breaker_reset_timeout=30.0,
    )


def test_policy_defaults_come_from_the_class() -> None:
    assert PlainConnector.policy({"base_url": BASE}) == CallPolicy(
        rate_limit=2.5,
        rate_limit_burst=None,
        fleet_rate_limit=50.0,
        retry_attempts=3,
        retry_window=120.0,
        breaker_fail_max=4,
        breaker_reset_timeout=15.0,
    )


def test_policy_overrides_from_config() -> None:
    policy = SandboxConnector.policy(
        {
            "rate_limit": 3,
            "retry_attempts": 2,
            "retry_window": 45.5,
            "breaker_fail_max": 9,
            "breaker_reset_timeout": 7,
        }
    )
    assert policy == CallPolicy(
        rate_limit=3.0,
        rate_limit_burst=0.03,
        fleet_rate_limit=None,
        retry_attempts=2,
        retry_window=45.5,
        breaker_fail_max=9,
        breaker_reset_timeout=7.0,
    )
    assert type(policy.retry_attempts) is int
    assert type(policy.breaker_fail_max) is int
    assert type(policy.rate_limit) is float


def test_policy_fleet_rate_limit_is_not_configurable() -> None:
    assert PlainConnector.policy({"fleet_rate_limit": 1}).fleet_rate_limit == 50.0


@pytest.mark.parametrize(
    "bad", [0, -1, -0.5, True, False, "5", None, [3], {"n": 1}, float("nan"), float("-inf")]
)
@pytest.mark.parametrize(
    "key", ["rate_limit", "retry_attempts", "retry_window", "breaker_fail_max",
            "breaker_reset_timeout"],
)  # fmt: skip
def test_policy_ignores_bad_values(key: str, bad: Any) -> None:
    assert SandboxConnector.policy({key: bad}) == SandboxConnector.policy({})


@pytest.mark.parametrize("key", ["retry_attempts", "breaker_fail_max"])
def test_policy_ignores_fractional_counts_below_one(key: str) -> None:
    policy = SandboxConnector.policy({key: 0.5})
    assert getattr(policy, key) >= 1


def test_policy_ignores_infinite_counts() -> None:
    assert SandboxConnector.policy({"retry_attempts": float("inf")}).retry_attempts == 8


# --- validate_config --------------------------------------------------------------------------


def test_validate_config_accepts_a_full_good_config() -> None:
    SandboxConnector.validate_config(
        {
            "base_url": "http://127.0.0.1:8000",
            "rate_limit": 2.5,
            "retry_attempts": 3,
            "retry_window": 60,
            "breaker_fail_max": 1,
            "breaker_reset_timeout": 0.5,
            "client_id": "c",
            "authorize_url": "https://auth.example.test/authorize",
            "token_url": "https://auth.example.test/token",
            "scopes": ["read", "write"],
        }
    )
    SandboxConnector.validate_config({})


def test_validate_config_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_config({"base_url": BASE, "zeta": 1, "alpha": 2})
    message = str(info.value)
    assert message.startswith("sandbox has no config key 'alpha'; it accepts ")
    for key in SandboxConnector.all_config_keys():
        assert key in message


def test_validate_config_oauth_keys_only_for_oauth_connectors() -> None:
    with pytest.raises(UsageError, match="no config key 'client_id'"):
        PlainConnector.validate_config({"client_id": "c"})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"base_url": "ftp://x.test"}, "config base_url must be an http:// or https:// URL."),
        ({"base_url": "https://"}, "config base_url must be an http:// or https:// URL."),
        ({"base_url": 5}, "config base_url must be an http:// or https:// URL."),
        ({"token_url": "auth.test/token"}, "config token_url must be an http:// or https:// URL."),
        ({"rate_limit": 0}, "config rate_limit must be a number of requests per second > 0."),
        ({"rate_limit": -2}, "config rate_limit must be a number of requests per second > 0."),
        ({"rate_limit": True}, "config rate_limit must be a number of requests per second > 0."),
        ({"rate_limit": "5"}, "config rate_limit must be a number of requests per second > 0."),
        ({"rate_limit": float("inf")},
         "config rate_limit must be a number of requests per second > 0."),
        ({"rate_limit": float("nan")},
         "config rate_limit must be a number of requests per second > 0."),
        ({"retry_window": 0}, "config retry_window must be a number of seconds > 0."),
        ({"retry_window": -1.5}, "config retry_window must be a number of seconds > 0."),
        ({"retry_window": float("inf")}, "config retry_window must be a number of seconds > 0."),
        ({"retry_window": float("nan")}, "config retry_window must be a number of seconds > 0."),
        ({"retry_window": False}, "config retry_window must be a number of seconds > 0."),
        ({"retry_window": None}, "config retry_window must be a number of seconds > 0."),
        ({"breaker_reset_timeout": "30"},
         "config breaker_reset_timeout must be a number of seconds > 0."),
        ({"breaker_reset_timeout": 0},
         "config breaker_reset_timeout must be a number of seconds > 0."),
        ({"retry_attempts": 0}, "config retry_attempts must be a whole number >= 1."),
        ({"retry_attempts": 2.0}, "config retry_attempts must be a whole number >= 1."),
        ({"retry_attempts": 1.5}, "config retry_attempts must be a whole number >= 1."),
        ({"retry_attempts": True}, "config retry_attempts must be a whole number >= 1."),
        ({"retry_attempts": "3"}, "config retry_attempts must be a whole number >= 1."),
        ({"breaker_fail_max": -3}, "config breaker_fail_max must be a whole number >= 1."),
        ({"breaker_fail_max": float("inf")},
         "config breaker_fail_max must be a whole number >= 1."),
        ({"scopes": "read write"}, "config scopes must be a list of strings."),
        ({"scopes": ["read", 3]}, "config scopes must be a list of strings."),
    ],
)  # fmt: skip
def test_validate_config_refuses_bad_values_in_one_sentence(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_config(config)
    text = str(info.value)
    assert text == message
    assert text.endswith(".")
    assert ". " not in text and "\n" not in text


# --- actions and describe ---------------------------------------------------------------------


def test_get_action_finds_by_name() -> None:
    action = SandboxConnector.get_action("get_message")
    assert action.method == "GET"
    assert action.path == "/v1/messages/{id}"


@pytest.mark.parametrize("name", ["nope", "", None, "Create_Message"])
def test_get_action_unknown_lists_the_known_ones(name: Any) -> None:
    with pytest.raises(UsageError) as info:
        SandboxConnector.get_action(name)
    assert str(info.value) == (
        f"sandbox has no action {name!r}; it offers create_message, create_message_unkeyed, "
        "get_message, get_item."
    )


def test_get_action_of_a_connector_without_actions() -> None:
    class Empty(Connector):
        name = "empty"

    with pytest.raises(UsageError) as info:
        Empty.get_action("x")
    assert str(info.value) == "empty has no action 'x'; it offers none."


def test_describe_lists_the_sandbox() -> None:
    described = SandboxConnector.describe()
    assert described["name"] == "sandbox"
    assert [a["name"] for a in described["actions"]] == [
        "create_message",
        "create_message_unkeyed",
        "get_message",
        "get_item",
    ]
    assert described["actions"][0] == {
        "name": "create_message",
        "method": "POST",
        "path": "/v1/messages",
        "params": [{"name": "text", "required": True, "type": "string"}],
        "idempotent": True,
        "resend_safe": True,
        "budget": None,
    }
    # An unkeyed post is not resent after a lost answer; a read is.
    assert described["actions"][1]["resend_safe"] is False
    assert described["actions"][2]["resend_safe"] is True
    assert [s["name"] for s in described["streams"]] == ["items", "items_newest", "items_by_tag"]
    assert described["streams"][1] == {
        "name": "items_newest",
        "path": "/v1/items",
        "params": [],
        "primary_key": "id",
        "replication_key": "updated_at",
        "order": "newest_first",
        "incremental": True,
    }
    assert described["streams"][2]["params"] == [
        {
            "name": "tag",
            "required": True,
            "type": "string",
            "description": "the first word of the items' names",
        }
    ]
    assert described["auth_kinds"] == ["api_key", "basic", "oauth2", "client_credentials"]
    assert described["endpoint_config_keys"] == []
    assert described["webhook_scheme"] == "standard-webhooks"
    assert described["config_keys"][:2] == ["base_url", "rate_limit"]
    assert "client_id" in described["config_keys"]
    assert set(described["secret_keys"]) == {
        "api_key",
        "username",
        "password",
        "client_secret",
        "webhook_secret",
    }
    json.dumps(described)  # what `connectors list --json` prints


def test_describe_of_a_plain_connector_has_no_oauth_keys() -> None:
    described = PlainConnector.describe()
    assert [a["name"] for a in described["actions"]] == ["create", "search", "remove"]
    assert described["actions"][1]["params"] == [
        {"name": "kind", "required": True, "type": "string"},
        {"name": "q", "required": False, "type": "string"},
    ]
    assert described["title"] == "plain" and described["auth_kinds"] == []
    assert described["streams"] == [] and described["docs"] is None
    assert "client_id" not in described["config_keys"]
    assert described["secret_keys"] == ["webhook_secret"]
    assert described["webhook_scheme"] is None


# --- construction, repr and URLs --------------------------------------------------------------


def test_missing_base_url_is_a_configuration_error(session: requests.Session) -> None:
    for config in ({}, {"base_url": ""}, {"base_url": None}):
        with pytest.raises(ConfigurationError) as info:
            SandboxConnector(config, {"api_key": API_KEY}, session=session)
        assert str(info.value) == "connection to sandbox has no base_url in its config."


def test_default_base_url_is_used_and_trailing_slash_dropped(session: requests.Session) -> None:
    plain = PlainConnector({}, {}, session=session)
    assert plain.base_url == "https://plain.example.test/api"
    assert plain.url("/things") == "https://plain.example.test/api/things"
    assert plain.url("things") == "https://plain.example.test/api/things"
    assert plain.url("https://other.test/x") == "https://other.test/x"
    assert plain.url("http://other.test/x") == "http://other.test/x"
    override = PlainConnector({"base_url": "https://mine.test//"}, {}, session=session)
    assert override.base_url == "https://mine.test"


def test_repr_never_shows_secrets(session: requests.Session) -> None:
    secrets = {"api_key": API_KEY, "username": "admin-user", "password": PASSWORD}
    connector = sandbox(session, secrets)
    connector.auth()
    text = repr(connector) + str(connector) + repr(connector.auth())
    for secret in secrets.values():
        assert secret not in text
    assert repr(connector) == f"<SandboxConnector {BASE}>"


def test_secrets_are_copied(session: requests.Session) -> None:
    secrets = {"api_key": API_KEY}
    config = {"base_url": BASE}
    connector = SandboxConnector(config, secrets, session=session)
    secrets["api_key"] = "changed"
    config["base_url"] = "https://changed.test"
    assert connector.base_url == BASE
    assert isinstance(connector.auth(), BearerTokenAuthenticator)


# --- authenticator ----------------------------------------------------------------------------


def test_api_key_means_bearer(session: requests.Session) -> None:
    auth = sandbox(session, {"api_key": API_KEY, "username": "u", "password": "p"}).authenticator()
    assert isinstance(auth, BearerTokenAuthenticator)


def test_username_and_password_mean_basic(session: requests.Session) -> None:
    auth = sandbox(session, {"username": "u", "password": "p"}).authenticator()
    assert isinstance(auth, BasicAuthenticator)


class Tokens:
    """A token source handing out the given tokens in turn (connectors.base.TokenSource)."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.refused = 0

    def __call__(self) -> str:
        return self.tokens.pop(0) if len(self.tokens) > 1 else self.tokens[0]

    def invalidate(self) -> None:
        self.refused += 1


def test_token_source_means_oauth2(session: requests.Session) -> None:
    auth = sandbox(session, {}, token_source=Tokens("tok")).authenticator()
    assert isinstance(auth, OAuth2Authenticator)


def test_static_credentials_win_over_token_source(session: requests.Session) -> None:
    auth = sandbox(session, {"api_key": API_KEY}, token_source=Tokens("tok")).authenticator()
    assert isinstance(auth, BearerTokenAuthenticator)


@pytest.mark.parametrize(
    "secrets",
    [{}, {"username": "u"}, {"password": "p"}, {"api_key": ""}, {"webhook_secret": "w"}],
)
def test_oauth_connector_without_credentials_refuses(
    session: requests.Session, secrets: dict[str, str]
) -> None:
    connector = sandbox(session, secrets)
    with pytest.raises(AuthenticationError) as info:
        connector.authenticator()
    assert info.value.connector == "sandbox"
    assert str(info.value) == (
        "the sandbox connection holds no credentials; connect it first. "
        "[sandbox: no answer, not applied]"
    )
    with pytest.raises(AuthenticationError):
        connector.auth()


def test_plain_connector_without_credentials_sends_no_auth(session: requests.Session) -> None:
    assert PlainConnector({}, {}, session=session).authenticator() is None


def test_auth_is_built_once(session: requests.Session) -> None:
    connector = sandbox(session)
    assert connector.auth() is connector.auth()


def test_reauthenticate(session: requests.Session) -> None:
    assert sandbox(session).reauthenticate() is False  # a static key: nothing to renew
    tokens = Tokens("t")
    assert sandbox(session, {}, token_source=tokens).reauthenticate() is True
    assert tokens.refused == 1  # the source hears of the refusal


# --- run_action -------------------------------------------------------------------------------


def test_run_action_posts_json_with_bearer_and_idempotency_key(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(BASE + "/v1/messages", json={"id": "m1", "text": "hi"}, status=201)
    result = sandbox(session).run_action("create_message", {"text": "hi"}, idempotency_key="k-1")
    assert result == {"id": "m1", "text": "hi"}
    request = rsps.calls[0].request
    assert json.loads(request.body or b"") == {"text": "hi"}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_run_action_without_key_sends_no_idempotency_header(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(BASE + "/v1/messages", json={"id": "m1"})
    sandbox(session).run_action("create_message", {"text": "hi"})
    assert "Idempotency-Key" not in rsps.calls[0].request.headers


def test_run_action_not_idempotent_action_gets_no_key(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(BASE + "/v1/messages", json={"id": "m2"})
    sandbox(session).run_action("create_message_unkeyed", {"text": "hi"}, idempotency_key="k-2")
    request = rsps.calls[0].request
    assert "Idempotency-Key" not in request.headers
    assert json.loads(request.body or b"") == {"text": "hi"}


def test_run_action_connector_without_idempotency_header_gets_no_key(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post("https://plain.example.test/api/things", json={})
    PlainConnector({}, {}, session=session).run_action(
        "create", {"text": "x"}, idempotency_key="k-3"
    )
    headers = rsps.calls[0].request.headers
    assert "Idempotency-Key" not in headers
    assert not any(v == "k-3" for v in headers.values())
    assert "Authorization" not in headers


def test_run_action_get_puts_params_in_the_path(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(BASE + "/v1/messages/m%2F1%20x", json={"id": "m/1 x"})
    result = sandbox(session).run_action("get_message", {"id": "m/1 x"}, idempotency_key="k")
    assert result == {"id": "m/1 x"}
    request = rsps.calls[0].request
    assert request.method == "GET"
    assert request.url == BASE + "/v1/messages/m%2F1%20x"
    assert request.body is None
    assert "Idempotency-Key" not in request.headers


def test_run_action_get_sends_other_params_as_query(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get("https://plain.example.test/api/things/red", json=[])
    PlainConnector({}, {}, session=session).run_action("search", {"kind": "red", "q": "a b"})
    request = rsps.calls[0].request
    assert request.url == "https://plain.example.test/api/things/red?q=a+b"
    assert request.body is None


def test_run_action_delete_sends_no_json_body(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.delete("https://plain.example.test/api/things/t1", status=204)
    result = PlainConnector({}, {}, session=session).run_action("remove", {"id": "t1"})
    assert result is None
    assert rsps.calls[0].request.body is None


def test_run_action_basic_auth(rsps: responses.RequestsMock, session: requests.Session) -> None:
    rsps.get(BASE + "/v1/items/i1", json={"id": "i1"})
    sandbox(session, {"username": "u", "password": PASSWORD}).run_action("get_item", {"id": "i1"})
    expected = base64.b64encode(f"u:{PASSWORD}".encode()).decode()
    assert rsps.calls[0].request.headers["Authorization"] == f"Basic {expected}"


def test_run_action_oauth_asks_the_token_source_per_request(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(BASE + "/v1/items/i1", json={})
    connector = sandbox(session, {}, token_source=Tokens("t1", "t2"))
    connector.run_action("get_item", {"id": "i1"})
    connector.run_action("get_item", {"id": "i1"})
    assert [c.request.headers["Authorization"] for c in rsps.calls] == [
        "Bearer t1",
        "Bearer t2",
    ]


def test_perform_action_answers_the_value_and_its_response(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(BASE + "/v1/messages", json={"id": "m1"}, headers={"X-RateLimit-Remaining": "9"})
    action = SandboxConnector.get_action("create_message")
    answer = sandbox(session).perform_action(action, action.validate({"text": "hi"}))
    assert answer.value == {"id": "m1"}
    assert answer.response.status_code == 200
    assert answer.response.headers["X-RateLimit-Remaining"] == "9"


def test_a_429_carries_its_response_and_wait(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(
        BASE + "/v1/messages",
        status=429,
        headers={"Retry-After": "2", "X-RateLimit-Remaining": "0"},
        body="slow",
    )
    with pytest.raises(RateLimitedError) as info:
        sandbox(session).run_action("create_message", {"text": "hi"})
    assert info.value.retry_after == 2.0
    assert info.value.response.status_code == 429
    assert info.value.response.headers["X-RateLimit-Remaining"] == "0"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, AuthenticationError), (404, FatalError), (500, RetriableError)],
)
def test_other_errors_carry_their_response(
    rsps: responses.RequestsMock, session: requests.Session, status: int, kind: type[Exception]
) -> None:
    rsps.get(BASE + "/v1/messages/m1", status=status, body="nope")
    with pytest.raises(kind) as info:
        sandbox(session).run_action("get_message", {"id": "m1"})
    assert info.value.response.status_code == status  # type: ignore[attr-defined]


def test_no_answer_carries_no_response(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(BASE + "/v1/messages/m1", body=requests.exceptions.ReadTimeout())
    with pytest.raises(RetriableError) as info:
        sandbox(session).run_action("get_message", {"id": "m1"})
    assert info.value.maybe_applied is True
    assert info.value.response is None


def test_run_action_connector_judge_runs_after_the_generic_rules(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    class Picky(SandboxConnector):
        def judge(self, response: requests.Response) -> None:
            if response.json().get("ok") is False:
                raise FatalError("picky said no.", connector=self.name)

    rsps.get(BASE + "/v1/items/i1", json={"ok": False})
    connector = Picky({"base_url": BASE}, {"api_key": API_KEY}, session=session)
    with pytest.raises(FatalError, match="picky said no"):
        connector.run_action("get_item", {"id": "i1"})


def test_budgets_are_the_connections_and_the_connectors(session: requests.Session) -> None:
    budgets = PlainConnector({"rate_limit": 4}, {}, session=session, scope="c1").budgets()
    assert budgets == (Budget("plain:c1", 4.0, None), Budget("plain", 50.0, None))
    assert sandbox(session, scope="c2").budgets() == (Budget("sandbox:c2", 100.0, 0.03),)


def test_a_connector_chooses_a_budget_per_request(session: requests.Session) -> None:
    class Tiered(SandboxConnector):
        def budgets(self, operation: Action | Stream | None = None) -> tuple[Budget, ...]:
            if isinstance(operation, Action) and operation.name == "get_item":
                return (Budget(f"{self.name}:{self.scope}:reads", 500.0),)
            return super().budgets(operation)

    client = Tiered({"base_url": BASE}, {"api_key": API_KEY}, session=session, scope="c3")
    assert client.budgets(Tiered.get_action("get_item")) == (Budget("sandbox:c3:reads", 500.0),)
    assert client.budgets(Tiered.get_action("create_message"))[0].key == "sandbox:c3"


def test_run_action_garbage_body_is_retriable(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.post(BASE + "/v1/messages", body="<html>", status=201)
    with pytest.raises(RetriableError) as info:
        sandbox(session).run_action("create_message", {"text": "hi"})
    assert info.value.maybe_applied is True


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("nope", {}, "has no action 'nope'"),
        ("create_message", {}, "needs the param 'text'"),
        ("create_message", {"text": 1}, "param 'text' of create_message must be a string"),
        ("create_message", {"text": "x", "extra": 1}, "takes no param 'extra'"),
        ("create_message", ["text"], "must be a JSON object"),
    ],
)
def test_run_action_refuses_bad_calls_without_a_request(
    rsps: responses.RequestsMock,
    session: requests.Session,
    name: str,
    params: Any,
    match: str,
) -> None:
    with pytest.raises(UsageError, match=match):
        sandbox(session).run_action(name, params)
    assert len(rsps.calls) == 0


def test_run_action_oauth_without_credentials_sends_nothing(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    with pytest.raises(AuthenticationError):
        sandbox(session, {}).run_action("get_item", {"id": "i1"})
    assert len(rsps.calls) == 0


def test_run_action_uses_the_connectors_timeout(
    rsps: responses.RequestsMock, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    original = session.request

    def spy(*args: Any, **kwargs: Any) -> requests.Response:
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(session, "request", spy)

    class Slow(SandboxConnector):
        timeout = (1.5, 90.0)

    rsps.get(BASE + "/v1/items/i1", json={})
    Slow({"base_url": BASE}, {"api_key": API_KEY}, session=session).run_action(
        "get_item", {"id": "i1"}
    )
    assert seen["timeout"] == (1.5, 90.0)
