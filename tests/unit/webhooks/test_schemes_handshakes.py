"""Slack (its docs' published example), Discord and Microsoft Graph (no published vectors: keys
and notifications made here), with their handshakes: Slack's challenge, Discord's PING, Graph's
validation token."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spark_integrations.webhooks.schemes import Answer, Refused, Verified
from tests.unit.webhooks import senders
from tests.unit.webhooks.checks import check, refused
from tests.unit.webhooks.senders import NOW, TOLERANCE

# Slack: docs.slack.dev "Verifying requests from Slack" (a slash command, /webhook-collect).
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = 1531420618
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)


def test_slack_published_example_verifies() -> None:
    headers = [("x-slack-signature", SLACK_SIGNATURE), ("x-slack-request-timestamp", str(SLACK_TS))]
    got = check("slack-v0", secret=SLACK_SECRET, headers=headers, body=SLACK_BODY, now=SLACK_TS)
    assert got.event_type == "slash_command" and got.answer is None
    assert got.payload["command"] == "/webhook-collect" and got.payload["text"] == ""
    assert got.delivery_id == senders.digest(f"v0:{SLACK_TS}:".encode() + SLACK_BODY)
    late = refused(
        "slack-v0",
        secret=SLACK_SECRET,
        headers=headers,
        body=SLACK_BODY,
        now=SLACK_TS + TOLERANCE + 1,
    )
    assert late.reason == "stale_timestamp"


def slack_signed(doc: Any, form: bool = False) -> tuple[list[tuple[str, str]], bytes]:
    body = f"payload={json.dumps(doc)}".encode() if form else json.dumps(doc).encode()
    return senders.slack("sec", body, NOW), body


def test_slack_url_verification_is_answered_with_its_challenge() -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    doc = {"token": "t", "challenge": challenge, "type": "url_verification"}
    headers, body = slack_signed(doc)
    got = check("slack-v0", secret="sec", headers=headers, body=body, now=NOW)
    expected = b'{"challenge": "' + challenge.encode() + b'"}'
    assert got.answer == Answer(200, expected, "application/json")
    # Unsigned, it is refused like any other delivery.
    assert refused("slack-v0", secret="other", headers=headers, body=body, now=NOW).status == 401


def test_slack_events_interactivity_and_others() -> None:
    event = {"type": "app_mention", "text": "hi"}
    headers, body = slack_signed(
        {"type": "event_callback", "event_id": "Ev08MFMKH6", "event": event}
    )
    got = check("slack-v0", secret="sec", headers=headers, body=body, now=NOW)
    assert (got.delivery_id, got.event_type) == ("Ev08MFMKH6", "app_mention")
    headers, body = slack_signed(
        {"type": "block_actions", "actions": [{"action_id": "a"}]}, form=True
    )
    got = check("slack-v0", secret="sec", headers=headers, body=body, now=NOW)
    assert got.event_type == "block_actions" and got.payload["actions"] == [{"action_id": "a"}]
    headers, body = slack_signed({"type": "app_rate_limited", "minute_rate_limited": 1518467820})
    assert (
        check("slack-v0", secret="sec", headers=headers, body=body, now=NOW).event_type
        == "app_rate_limited"
    )
    headers, body = slack_signed({"type": "event_callback", "event": {"type": "message"}})
    assert (
        refused("slack-v0", secret="sec", headers=headers, body=body, now=NOW).reason == "malformed"
    )
    for junk in (b"a=1&a=2&command=x", b"text=hello", b"payload=%7Bnope", b"\xff\xfe"):
        bad = refused(
            "slack-v0", secret="sec", headers=senders.slack("sec", junk, NOW), body=junk, now=NOW
        )
        assert (bad.status, bad.reason) == (400, "malformed")


# Discord publishes no signature vector: keys are made here.
DISCORD_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def discord_check(doc: Any, key: Ed25519PrivateKey = DISCORD_KEY, ts: int = NOW) -> Verified:
    body = json.dumps(doc).encode()
    headers = senders.discord(key, body, ts)
    return check(
        "discord-ed25519",
        secret=senders.public_hex(DISCORD_KEY),
        headers=headers,
        body=body,
        now=NOW,
    )


def test_discord_ping_is_answered_with_a_pong() -> None:
    got = discord_check({"type": 1, "id": "1", "application_id": "2"})
    assert got.answer == Answer(200, b'{"type":1}', "application/json")
    assert json.loads(got.answer.body) == {"type": 1}


def test_discord_interactions_get_their_id_and_kind() -> None:
    cases = [
        ({"type": 2, "id": "1100", "data": {"name": "deploy"}}, "application_command.deploy"),
        (
            {"type": 4, "id": "1101", "data": {"name": "deploy"}},
            "application_command_autocomplete.deploy",
        ),
        ({"type": 3, "id": "1102", "data": {"custom_id": "ok"}}, "message_component"),
        ({"type": 5, "id": "1103", "data": {"custom_id": "form"}}, "modal_submit"),
        ({"type": 9, "id": "1104"}, "interaction.9"),
    ]
    for doc, event_type in cases:
        got = discord_check(doc)
        assert (got.delivery_id, got.event_type, got.answer) == (doc["id"], event_type, None)


def test_discord_refuses_other_keys_stale_times_and_bad_public_keys() -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    with pytest.raises(Refused) as caught:
        discord_check({"type": 1}, key=other)
    assert (caught.value.status, caught.value.reason) == (401, "bad_signature")
    with pytest.raises(Refused) as caught:
        discord_check({"type": 1}, ts=NOW - TOLERANCE - 1)
    assert caught.value.reason == "stale_timestamp"
    body = b'{"type":1}'
    for secret in ("abc", "zz" * 32, senders.public_hex(DISCORD_KEY)[:-2]):
        got = refused(
            "discord-ed25519",
            secret=secret,
            headers=senders.discord(DISCORD_KEY, body, NOW),
            body=body,
            now=NOW,
        )
        assert got.reason == "no_secret"


# Microsoft Graph publishes no signed example (nothing is signed): notifications are made here.
def graph_body(*items: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(items)}).encode()


def test_graph_validation_token_is_echoed_as_text() -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 2f3c"
    got = check(
        "ms-graph-client-state",
        secret="state",
        headers=[],
        query={"validationToken": token},
        body=b"",
        now=NOW,
    )
    assert got.answer == Answer(200, token.encode(), "text/plain; charset=utf-8")
    for bad in ("", "x" * 5000, "a\nb"):
        query = {"validationToken": bad}
        got_bad = refused(
            "ms-graph-client-state", secret="state", headers=[], query=query, body=b"", now=NOW
        )
        assert got_bad.status == 400


def test_graph_notifications_need_every_client_state() -> None:
    created = {"clientState": "state", "changeType": "created", "resource": "chats/1/messages/2"}
    body = graph_body(created, dict(created, resource="chats/1/messages/3"))
    got = check("ms-graph-client-state", secret="state", headers=[], body=body, now=NOW)
    assert (got.delivery_id, got.event_type) == (senders.digest(body), "created")
    assert len(got.payload["value"]) == 2
    lifecycle = {"clientState": "state", "lifecycleEvent": "reauthorizationRequired"}
    got = check(
        "ms-graph-client-state", secret="state", headers=[], body=graph_body(lifecycle), now=NOW
    )
    assert got.event_type == "lifecycle.reauthorizationRequired"
    mixed = graph_body(created, dict(created, changeType="deleted"))
    assert (
        check("ms-graph-client-state", secret="state", headers=[], body=mixed, now=NOW).event_type
        == "mixed"
    )
    for bad in (
        graph_body(created, dict(created, clientState="stat")),
        graph_body(created, {"changeType": "created"}),
        graph_body(),
        b'{"value": {}}',
        b"[]",
        b"not json",
    ):
        assert (
            refused("ms-graph-client-state", secret="state", headers=[], body=bad, now=NOW).status
            == 401
        )
