"""The teams connectors' hooks, and the connector against the Teams emulator in process: the
OAuth endpoints under login_url with the tenant in their path, client credentials obtained from
the emulator's token endpoint, a delta round then a round of changes only, and the webhook's
answers read (what the contract suite cannot show with one recorded answer at a time)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from spark_integrations.connectors.oauth import ClientCredentialsAuthenticator
from spark_integrations.connectors.providers.teams import APP_SCOPE, Teams, TeamsWebhook
from spark_integrations.errors import FatalError, RateLimitedError, UsageError
from tests.emulators.teams import CHANNEL_ID, TEAM_ID, TENANT_ID, TeamsEmulator
from tests.emulators.teams_webhook import TeamsWebhookEmulator

CLIENT = {"client_id": "11112222-bbbb-3333-cccc-4444dddd5555"}
SECRETS = {"client_secret": "sampleCredentia1s"}


def test_the_code_flow_defaults_to_the_common_tenant_on_microsofts_login_host() -> None:
    client = Teams.oauth_client(CLIENT, SECRETS)
    assert client.authorize_url == "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    assert client.token_url == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert "offline_access" in client.scopes
    assert "https://graph.microsoft.com/ChannelMessage.Send" in client.scopes


def test_login_url_and_tenant_move_the_endpoints_and_the_tenant_is_one_segment() -> None:
    config = {**CLIENT, "login_url": "https://login.microsoftonline.us/", "tenant": "a/b"}
    client = Teams.oauth_client(config, SECRETS)
    assert client.token_url == "https://login.microsoftonline.us/a%2Fb/oauth2/v2.0/token"


def test_client_credentials_ask_for_the_default_scope_and_need_a_tenant() -> None:
    config = {**CLIENT, "grant_type": "client_credentials", "tenant": TENANT_ID}
    client = Teams.oauth_client(config, SECRETS)
    assert client.scopes == (APP_SCOPE,)
    assert client.token_url.endswith(f"/{TENANT_ID}/oauth2/v2.0/token")
    for tenant in (None, "common"):
        refused = {**CLIENT, "grant_type": "client_credentials"}
        if tenant:
            refused["tenant"] = tenant
        with pytest.raises(UsageError, match="needs config tenant"):
            Teams.oauth_client(refused, SECRETS)


def test_login_url_meets_the_url_policy_and_moves_the_credentials() -> None:
    assert "login_url" in Teams.url_keys()
    assert "tenant" in Teams.endpoint_keys()
    with pytest.raises(UsageError, match="login_url"):
        Teams.validate_config({"login_url": "ftp://login.example"})


@pytest.fixture
def emulator() -> Iterator[TeamsEmulator]:
    with TeamsEmulator(limits={"get_message": 100, "per_team_or_channel": 100}) as emu:
        emu.identity.register_client(CLIENT["client_id"], SECRETS["client_secret"])
        yield emu


class _AppToken:
    """A token source on the client-credentials grant (the fleet keeps these in its store)."""

    def __init__(self, grant: ClientCredentialsAuthenticator) -> None:
        self.grant = grant

    def __call__(self) -> str:
        return self.grant.access_token()

    def invalidate(self) -> None:
        self.grant.invalidate()


def _client(emu: TeamsEmulator) -> Teams:
    config = {**CLIENT, "grant_type": "client_credentials", "tenant": TENANT_ID,
              "login_url": emu.url, "base_url": emu.url + "/v1.0"}  # fmt: skip
    oauth = Teams.oauth_client(config, SECRETS)
    grant = ClientCredentialsAuthenticator(
        oauth.token_url, oauth.client_id, SECRETS["client_secret"], scopes=oauth.scopes,
        auth_method="client_secret_post",
    )  # fmt: skip
    return Teams(config, {}, session=requests.Session(), token_source=_AppToken(grant))


def _round(client: Teams, since: Any) -> tuple[list[str], Any]:
    stream = client.get_stream("channel_messages")
    params = stream.validate_params({"team_id": TEAM_ID, "channel_id": CHANNEL_ID})
    ids: list[str] = []
    position = None
    for _ in range(20):
        page = client.perform_page(stream, since=since, position=position, params=params).value
        ids += [r["id"] for r in page.records]
        if page.finished:
            return ids, page.cursor
        position = page.position
    raise AssertionError("the delta round did not end")


def test_a_delta_round_reads_everything_then_the_next_only_the_changes(
    emulator: TeamsEmulator,
) -> None:
    sent = [emulator.add_message(TEAM_ID, CHANNEL_ID, f"m{i}")["id"] for i in range(120)]
    client = _client(emulator)
    ids, cursor = _round(client, None)
    assert ids == sent
    assert str(cursor).startswith(emulator.url + "/v1.0/teams/") and "$deltatoken=" in cursor
    tops = [r["query"].get("$top") for r in emulator.recorded("messages_delta")]
    assert tops == ["50", None, None]  # the links carry their own query
    assert parse_qs(emulator.recorded("token")[0]["body"])["scope"] == [APP_SCOPE]

    emulator.edit_message(TEAM_ID, CHANNEL_ID, sent[7], "edited")
    fresh = emulator.add_message(TEAM_ID, CHANNEL_ID, "new")["id"]
    again, next_cursor = _round(client, cursor)
    assert again == [sent[7], fresh]
    assert next_cursor != cursor


def test_a_post_with_an_app_only_token_is_fatal_not_a_reauth(emulator: TeamsEmulator) -> None:
    client = _client(emulator)
    action = client.get_action("send_channel_message")
    params = action.validate(
        {"team_id": TEAM_ID, "channel_id": CHANNEL_ID, "body": {"content": "hi"}}
    )
    with pytest.raises(FatalError) as caught:
        client.perform_action(action, params)
    assert "application-only" in str(caught.value)


def test_the_webhook_answers_are_read_and_a_throttled_200_is_rate_limited() -> None:
    with TeamsWebhookEmulator(windows=((1, 1),)) as emu:
        url = emu.add_webhook()
        client = TeamsWebhook({}, {"webhook_url": url}, session=requests.Session())
        action = client.get_action("post")
        result = client.perform_action(action, action.validate({"text": "Hello World"})).value
        assert result == {"ok": True, "status": 200, "response": "1"}
        with pytest.raises(RateLimitedError) as caught:
            client.perform_action(action, action.validate({"text": "again"}))
        assert url not in str(caught.value) and url not in repr(client)
        flow = TeamsWebhook(
            {}, {"webhook_url": emu.add_webhook("workflow")}, session=requests.Session()
        )
        answer = flow.perform_action(
            action, action.validate({"type": "message", "attachments": []})
        )
        assert answer.value == {"ok": True, "status": 202}
        assert [p["payload"] for p in emu.posts] == [
            {"text": "Hello World"},
            {"type": "message", "attachments": []},
        ]


def test_the_code_flows_tokens_refresh_with_the_client_in_the_body(emulator: TeamsEmulator) -> None:
    """client_secret_post: the refresh body holds client_id with client_secret (Microsoft
    requires client_id), and each refresh hands a new refresh token."""
    redirect = "http://127.0.0.1:9/callback"
    answer = requests.get(
        f"{emulator.url}/common/oauth2/v2.0/authorize",
        params={"client_id": CLIENT["client_id"], "response_type": "code",
                "redirect_uri": redirect, "scope": "offline_access ChannelMessage.Send"},
        allow_redirects=False,
        timeout=10,
    )  # fmt: skip
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    oauth = Teams.oauth_client({**CLIENT, "login_url": emulator.url}, SECRETS)
    endpoint = oauth.endpoint(pooled=False)
    first = endpoint.exchange_code(code, redirect_uri=redirect)
    second = endpoint.refresh(first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    body = parse_qs(emulator.recorded("token")[-1]["body"])
    assert body["client_id"] == [CLIENT["client_id"]] and body["client_secret"] == [
        SECRETS["client_secret"]
    ]


def test_the_emulators_documented_limit_answers_429_with_retry_after() -> None:
    """Past the limit (here 1 a second), Graph's 429 TooManyRequests with Retry-After."""
    with TeamsEmulator(limits={"get_team_channel": 1}) as emu:
        emu.identity.register_client(CLIENT["client_id"], SECRETS["client_secret"])
        client = _client(emu)
        action = client.get_action("list_channels")
        params = action.validate({"team_id": TEAM_ID})
        client.perform_action(action, params)
        with pytest.raises(RateLimitedError) as caught:
            client.perform_action(action, params)
        assert caught.value.retry_after is not None and caught.value.retry_after >= 1
        assert emu.stats()["rate_limited"] == 1
