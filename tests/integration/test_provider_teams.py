"""Microsoft Teams end to end: real workers against the loopback Teams emulators.

The ``teams`` connection uses client credentials: the worker obtains its app-only token from
the emulator's identity-platform token endpoint (tenant in the path, ``.default`` scope) and
keeps it in the store. One sync of a channel's messages reads the whole delta round and keeps
the ``@odata.deltaLink`` as its cursor; the next run starts there and reads only the changes.
One action (``list_channels``) runs through ``integrations.call`` with one injected error of
each class: 429 and 503 with ``Retry-After`` (the retry waits as told), a 401 (the token is
renewed once), 403 and 404 (fatal at once, a dead letter each). Apart from the injected 429,
the emulator throttles nothing: the connector's tiers keep under Graph's documented Teams
limits, which the emulator enforces. A ``teams_webhook`` connection posts through an incoming
webhook URL held as its secret, including a throttled answer hidden in a 200.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.teams import CHANNEL_ID, TEAM_ID, TENANT_ID, TeamsEmulator
from tests.emulators.teams_webhook import TeamsWebhookEmulator
from tests.integration.fleet import add_connection, dead_letters
from tests.integration.oauth_helpers import connect_with_code, stored_token
from tests.integration.providers import (
    add_sync,
    call,
    gap,
    logged,
    start_emulator,
    start_fleet,
)
from tests.integration.test_syncs import cursor_of, run_to_end, stored

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

CLIENT_ID = "11112222-bbbb-3333-cccc-4444dddd5555"
CLIENT_SECRET = "teams-secret-" + uuid.uuid4().hex


def add(env: dict[str, str], provider: str, config: dict[str, Any], secret: str) -> str:
    return add_connection(env, f"{provider}-e2e", config, secret, provider=provider)


def add_messages_sync(env: dict[str, str], connection_id: str) -> str:
    where = {"team_id": TEAM_ID, "channel_id": CHANNEL_ID}
    answer = add_sync(env, connection_id, "channel_messages", where)
    assert answer["params"] == where
    return str(answer["id"])


def test_a_delta_sync_and_an_action_through_a_worker(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(TeamsEmulator(), processes)
    emu.identity.register_client(CLIENT_ID, CLIENT_SECRET)
    sent = [emu.add_message(TEAM_ID, CHANNEL_ID, f"message {i}")["id"] for i in range(120)]
    config = {
        "client_id": CLIENT_ID,
        "grant_type": "client_credentials",
        "tenant": TENANT_ID,
        "login_url": emu.url,
        "base_url": emu.url + "/v1.0",
    }
    cid = add(redis_env, "teams", config, f"client_secret={CLIENT_SECRET}")
    sync_id = add_messages_sync(redis_env, cid)
    _, app = start_fleet(redis_env, short_tmp, processes, concurrency=2)

    # The first run reads the whole round (50 + 50 + 20) and keeps the deltaLink.
    first = run_to_end(app, sync_id)
    assert (first["records"], first["pages"]) == (120, 3), first
    assert sorted(stored(redis_env, sync_id)) == sorted(sent)
    cursor = cursor_of(redis_env, sync_id)
    assert isinstance(cursor, str) and cursor.startswith(emu.url + "/v1.0/teams/")
    assert "$deltatoken=" in cursor
    token_requests = emu.recorded("token")
    assert (
        len(token_requests) == 1 and f"/{TENANT_ID}/oauth2/v2.0/token" in token_requests[0]["path"]
    )

    # A message edited and two posted: the next run starts at the deltaLink, reads only them.
    emu.edit_message(TEAM_ID, CHANNEL_ID, sent[3], "edited")
    fresh = [emu.add_message(TEAM_ID, CHANNEL_ID, f"new {i}")["id"] for i in range(2)]
    second = run_to_end(app, sync_id)
    assert (second["records"], second["pages"]) == (3, 1), second
    delta = emu.recorded("messages_delta")[-1]
    assert "$deltatoken" in delta["query"] and "$top" not in delta["query"]
    records = stored(redis_env, sync_id)
    assert len(records) == 122 and set(fresh) <= set(records)
    assert records[sent[3]]["body"]["content"] == "edited"
    assert cursor_of(redis_env, sync_id) not in (None, cursor)

    # One action; then one injected error of each class on it.
    ok, answer = call(app, cid, "list_channels", {"team_id": TEAM_ID})
    assert ok, answer
    assert [c["id"] for c in answer["data"]["value"]] == [CHANNEL_ID]

    emu.inject("throttled", route="list_channels", headers={"Retry-After": "1"})
    ok, answer = call(app, cid, "list_channels", {"team_id": TEAM_ID})
    assert ok and answer["attempts"] == 2, answer
    assert gap(emu, "list_channels") >= 0.9, "the retry waited for Retry-After"

    emu.inject("unavailable", route="list_channels", headers={"Retry-After": "1"})
    ok, answer = call(app, cid, "list_channels", {"team_id": TEAM_ID})
    assert ok and answer["attempts"] == 2, answer
    assert gap(emu, "list_channels") >= 0.9, "the retry waited for Retry-After"

    tokens_before = len(emu.recorded("token"))
    emu.inject("unauthorized", route="list_channels")
    ok, answer = call(app, cid, "list_channels", {"team_id": TEAM_ID})
    assert ok, answer
    assert len(emu.recorded("token")) == tokens_before + 1, "the token was renewed once"

    letters_before = len(dead_letters(redis_env))
    for kind, code in (("forbidden", "Forbidden"), ("not_found", "NotFound")):
        requests_before = len(emu.recorded("list_channels"))
        emu.inject(kind, route="list_channels")
        ok, error = call(app, cid, "list_channels", {"team_id": TEAM_ID})
        assert not ok and code in str(error), error
        assert len(emu.recorded("list_channels")) == requests_before + 1, "fatal: not retried"
    # An app-only token cannot post: Graph's 401 "Unauthorized" is fatal, not a renewal.
    ok, error = call(app, cid, "send_channel_message", {
        "team_id": TEAM_ID, "channel_id": CHANNEL_ID, "body": {"content": "hi"}})  # fmt: skip
    assert not ok and "application-only" in str(error), error
    assert len(dead_letters(redis_env)) == letters_before + 3

    # The tiers kept under the documented limits: the only 429 was the injected one.
    assert emu.stats()["rate_limited"] == 1


def connect(env: dict[str, str], connection_id: str, emu: TeamsEmulator) -> None:
    """A user signs in and consents (the emulator approves at once); the code is exchanged and
    the tokens stored as the gateway's callback stores them."""
    scope = "offline_access https://graph.microsoft.com/ChannelMessage.Send"
    token, _ = connect_with_code(
        env,
        connection_id,
        authorize_url=f"{emu.url}/common/oauth2/v2.0/authorize",
        token_url=f"{emu.url}/common/oauth2/v2.0/token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        params={"response_type": "code", "scope": scope},
        statuses=(302,),
    )
    assert token.get("refresh_token"), "offline_access gives a refresh token"


def test_a_delegated_connection_posts_replies_and_refreshes_its_rotating_token(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(TeamsEmulator(), processes)
    emu.identity.register_client(CLIENT_ID, CLIENT_SECRET)
    # A refresh token once used is refused: only the rotated one the fleet stored works.
    emu.identity.revoke_used_refresh_tokens = True
    config = {"client_id": CLIENT_ID, "login_url": emu.url, "base_url": emu.url + "/v1.0"}
    cid = add(redis_env, "teams", config, f"client_secret={CLIENT_SECRET}")
    connect(redis_env, cid, emu)
    _, app = start_fleet(redis_env, short_tmp, processes, concurrency=1)

    where = {"team_id": TEAM_ID, "channel_id": CHANNEL_ID}
    ok, answer = call(app, cid, "send_channel_message", {**where, "body": {"content": "Hello"}})
    assert ok, answer
    posted = answer["data"]
    assert posted["body"]["content"] == "Hello" and posted["replyToId"] is None
    assert emu.messages[(TEAM_ID, CHANNEL_ID)][posted["id"]]["body"]["content"] == "Hello"

    # Twice: the access token expires, the call meets a 401, the fleet refreshes with the
    # refresh token it holds and stores the new one the answer carries.
    for round_ in range(2):
        before = stored_token(redis_env, cid)
        assert before is not None and before.refresh_token
        emu.identity.expire_access_tokens()
        reply = {**where, "message_id": posted["id"],
                 "body": {"contentType": "html", "content": f"reply {round_}"}}  # fmt: skip
        ok, answer = call(app, cid, "reply_to_message", reply)
        assert ok, answer
        assert answer["data"]["replyToId"] == posted["id"]
        after = stored_token(redis_env, cid)
        assert after is not None and after.refresh_token not in (None, before.refresh_token)
    refreshes = [r for r in emu.recorded("token") if "grant_type=refresh_token" in r["body"]]
    assert len(refreshes) == 2
    assert all("/common/oauth2/v2.0/token" in r["path"] for r in refreshes)
    assert emu.stats()["rate_limited"] == 0


def test_a_webhook_post_through_a_worker(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    emu = start_emulator(TeamsWebhookEmulator(), processes)
    url = emu.add_webhook()
    cid = add(redis_env, "teams_webhook", {}, f"webhook_url={url}")
    workers, app = start_fleet(redis_env, short_tmp, processes, concurrency=1)

    ok, answer = call(app, cid, "post", {"text": "Hello World"})
    assert ok, answer
    assert answer["data"] == {"ok": True, "status": 200, "response": "1"}

    # Throttled the way connectors are: a 200 naming the 429. Retried, then posted.
    emu.inject("throttled")
    card = {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": {"type": "AdaptiveCard", "version": "1.2",
                    "body": [{"type": "TextBlock", "text": "deployed"}]}}]}  # fmt: skip
    ok, answer = call(app, cid, "post", card)
    assert ok and answer["attempts"] == 2, answer
    assert [p["payload"] for p in emu.posts] == [{"text": "Hello World"}, card]

    # The URL is the secret: it appears in no result and no log line of the worker.
    secret_part = url.rsplit("/", 2)[-2]
    assert secret_part not in json.dumps(answer)
    assert not logged(workers, secret_part)
