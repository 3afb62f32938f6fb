"""The pieces of one delivery: the retry schedule kept in the store, the claim that makes two
messages one attempt, the signature a Standard Webhooks receiver verifies, and the checks of
what a subscriber asks for."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from spark_integrations.errors import UsageError
from spark_integrations.store import SecretBox, session_scope
from spark_integrations.store.models_webhooks import OutboundDelivery
from spark_integrations.webhooks.delivery import (
    RETRY_SCHEDULE,
    Claim,
    Outcome,
    claim,
    event_body,
    post_event,
    settle,
    take_due,
)
from spark_integrations.webhooks.outbound import record_event
from spark_integrations.webhooks.subscribers import (
    add_url_subscriber,
    check_events,
    check_secret,
    matches,
    new_secret,
)

HOOK = "https://receiver.example/in"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_the_schedule_is_standard_webhooks_own() -> None:
    """Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (the specification's example,
    Svix's schedule): eight attempts over about 28 hours."""
    assert RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.fixture
def delivery(store_url: str, fernet_key: str) -> str:
    """One pending delivery of one event to one URL subscriber; its id."""
    with session_scope(store_url) as session:
        add_url_subscriber(
            session, SecretBox([fernet_key]), url=HOOK, events=["sync.*"], secret=new_secret()
        )
        [delivery_id] = record_event(session, "sync.succeeded", {"sync_id": "s"}, now=T0)
    return delivery_id


def test_each_failed_attempt_waits_the_next_step_of_the_schedule_then_fails(
    store_url: str, delivery: str
) -> None:
    now = T0
    waits = []
    for attempt in range(len(RETRY_SCHEDULE)):
        with session_scope(store_url) as session:
            done = claim(session, delivery, attempt=attempt, lease=60, now=now)
            assert done is not None and done.attempt == attempt + 1
            settled = settle(session, done, Outcome(False, "down."), now=now)
        if settled.outcome == "retried":
            assert settled.next_at is not None
            waits.append((settled.next_at - now).total_seconds())
            now = settled.next_at
    assert waits == list(RETRY_SCHEDULE[1:])
    assert settled.outcome == "failed"
    with session_scope(store_url) as session:
        row = session.get(OutboundDelivery, delivery)
        assert row is not None and (row.status, row.attempts) == ("failed", 8)
        assert claim(session, delivery, attempt=8, lease=60) is None


def test_one_attempt_is_claimed_once_and_a_stale_message_does_nothing(
    store_url: str, delivery: str
) -> None:
    with session_scope(store_url) as session:
        first = claim(session, delivery, attempt=0, lease=60, now=T0)
        assert first is not None
        # The same attempt's second message, and an older attempt's message: nothing.
        assert claim(session, delivery, attempt=0, lease=60, now=T0) is None
        row = session.get(OutboundDelivery, delivery)
        assert row is not None and row.next_attempt_at == T0 + timedelta(seconds=60)


def test_an_attempt_overtaken_after_its_lease_settles_nothing_but_a_success(
    store_url: str, delivery: str
) -> None:
    with session_scope(store_url) as session:
        slow = claim(session, delivery, attempt=0, lease=60, now=T0)
        later = claim(session, delivery, attempt=1, lease=60, now=T0 + timedelta(seconds=61))
        assert slow is not None and later is not None
        assert settle(session, slow, Outcome(False, "late."), now=T0).outcome == "stale"
        assert settle(session, slow, Outcome(True), now=T0).outcome == "delivered"
        assert settle(session, later, Outcome(False, "x."), now=T0).outcome == "stale"


def test_the_sweep_takes_due_deliveries_oldest_first_and_holds_them(
    store_url: str, delivery: str
) -> None:
    with session_scope(store_url) as session:
        # record_event leased it for its first message: not due before the lease ends.
        assert take_due(session, lease=120, now=T0) == []
        assert take_due(session, lease=120, now=T0 + timedelta(seconds=121)) == [(delivery, 0)]
        assert take_due(session, lease=120, now=T0 + timedelta(seconds=122)) == []


def signed(secret: str, stamp: datetime) -> tuple[Claim, dict[str, str], bytes]:
    done = Claim(
        delivery_id="d1", event_id="evt_1", event_type="sync.failed",
        data={"sync_id": "s", "error": "la page 3 a échoué."}, created_at=T0,
        subscriber_id="sub", kind="url", attempt=1, url=HOOK,
    )  # fmt: skip
    seen: dict[str, Any] = {}
    with responses.RequestsMock() as mock:

        def keep(request: Any) -> tuple[int, dict[str, str], str]:
            seen["headers"], seen["body"] = dict(request.headers), request.body
            return 202, {}, ""

        mock.add_callback(responses.POST, HOOK, callback=keep)
        assert post_event(done, secret, now=stamp) == Outcome(True)
    return done, seen["headers"], seen["body"]


def test_a_receiver_verifies_the_post_with_the_standardwebhooks_package() -> None:
    secret = new_secret()
    now = datetime.now(UTC)
    done, headers, body = signed(secret, now)
    assert Webhook(secret).verify(body, headers) == {
        "type": "sync.failed",
        "timestamp": "2030-01-01T00:00:00Z",
        "data": {"sync_id": "s", "error": "la page 3 a échoué."},
    }
    assert body == event_body(done)
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b'"s"', b'"t"'), headers)


def test_the_timestamp_signed_is_the_attempts_so_an_old_capture_is_refused() -> None:
    secret = new_secret()
    _, headers, body = signed(secret, datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, headers)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Outcome(True)),
        (299, Outcome(True)),
        (
            301,
            Outcome(False, "the receiver answered HTTP 301 (a redirect, which is not followed)."),
        ),
        (400, Outcome(False, "the receiver answered HTTP 400.")),
        (410, Outcome(False, "the receiver answered 410 Gone; the subscriber was disabled.", True)),
        (500, Outcome(False, "the receiver answered HTTP 500.")),
    ],
)
def test_a_2xx_delivers_and_anything_else_fails_the_attempt(status: int, expected: Outcome) -> None:
    done = Claim("d", "e", "sync.failed", {}, T0, "s", "url", 1, url=HOOK)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, HOOK, status=status, headers={"Location": "https://x/"})
        assert post_event(done, new_secret()) == expected


def test_event_patterns_are_known_types_or_match_one() -> None:
    assert check_events(["sync.*,dead_letter.written", "sync.*"]) == [
        "sync.*",
        "dead_letter.written",
    ]
    assert check_events(["*"]) == ["*"]
    for bad in ["sync.bogus", "ping", "Sync.failed", "sync.[a-z]*", " , "]:
        with pytest.raises(UsageError, match=r"the known ones are sync\.succeeded, sync\.failed"):
            check_events([bad])
    assert matches(["sync.*"], "sync.failed") and not matches(["sync.*"], "webhook.received")


def test_secrets_are_standard_webhooks_secrets() -> None:
    made = new_secret()
    assert made.startswith("whsec_") and len(base64.b64decode(made[6:])) == 32
    assert check_secret(made) == made
    Webhook(made)  # the package takes it
    short = "whsec_" + base64.b64encode(b"x" * 23).decode()
    for bad in [
        made[6:],
        "whsec_not base64!",
        short,
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ]:
        with pytest.raises(UsageError) as refused:
            check_secret(bad)
        assert bad not in str(refused.value)


def test_keys_rotate_re_encrypts_the_subscribers_secrets() -> None:
    from spark_integrations.store.keys import encrypted_tables

    assert "subscribers.secret" in {n for enc in encrypted_tables() for n in enc.column_names}
