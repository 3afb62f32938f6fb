"""The HMAC schemes against their providers' published examples (Standard Webhooks' test vectors,
Stripe's, GitHub's docs) and the generic scheme's documented one; rotations and their edges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spark_integrations.webhooks.schemes import Refused, Verified
from tests.unit.webhooks import senders
from tests.unit.webhooks.checks import check, refused
from tests.unit.webhooks.senders import NOW, TOLERANCE

ROOT = Path(__file__).resolve().parents[3]

# Standard Webhooks: the test vectors of the specification's own libraries (in
# standard-webhooks/standard-webhooks: libraries/python/tests/test_webhooks.py, test_sign_function;
# libraries/rust/src/lib.rs, test_sign).
STANDARD_VECTORS = [
    (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ),
    (
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        b'{"email":"test@example.com","username":"test_user"}',
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    ),
]


@pytest.mark.parametrize(("secret", "msg_id", "ts", "body", "signature"), STANDARD_VECTORS)
def test_standard_webhooks_vectors_verify(
    secret: str, msg_id: str, ts: int, body: bytes, signature: str
) -> None:
    headers = [
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(ts)),
        ("webhook-signature", signature),
    ]
    got = check("standard-webhooks", secret=secret, headers=headers, body=body, now=ts)
    assert got == Verified(msg_id, None, json.loads(body))
    # The same vector one bit off is refused.
    tampered = [
        *headers[:2],
        ("webhook-signature", signature.replace("g0hM", "g0hN").replace("tZ1I", "tZ1J")),
    ]
    assert (
        refused("standard-webhooks", secret=secret, headers=tampered, body=body, now=ts).reason
        == "bad_signature"
    )


def test_standard_webhooks_rotation_any_listed_signature_passes() -> None:
    # The libraries' multi-signature case: wrong v1s, another version and the right one.
    secret, msg_id, ts, body, good = STANDARD_VECTORS[0]
    listed = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            good,
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
        ]
    )
    headers = [
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(ts)),
        ("webhook-signature", listed),
    ]
    assert (
        check("standard-webhooks", secret=secret, headers=headers, body=body, now=ts).delivery_id
        == msg_id
    )
    wrong_only = [*headers[:2], ("webhook-signature", listed.replace(good, ""))]
    refused("standard-webhooks", secret=secret, headers=wrong_only, body=body, now=ts)


def test_standard_webhooks_secret_that_is_no_key_is_refused() -> None:
    _, msg_id, ts, body, good = STANDARD_VECTORS[0]
    headers = [("webhook-id", msg_id), ("webhook-timestamp", str(ts)), ("webhook-signature", good)]
    for secret in ("whsec_", "whsec_===", "whsec_!!!!"):
        got = refused("standard-webhooks", secret=secret, headers=headers, body=body, now=ts)
        assert (got.status, got.reason) == (401, "no_secret")


# Stripe: stripe-dotnet's published fixture (src/StripeTests/Resources/event_test_signature.json
# with EventUtilityTest's header, secret and timestamp), byte for byte.
STRIPE_SECRET = "webhook_secret"
STRIPE_TS = 1533204620
STRIPE_HEADER = (
    "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,"
    "v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef"
)
STRIPE_BODY = b"""{
  "id": "evt_123",
  "object": "event",
  "account": "acct_123",
  "api_version": "2017-05-25",
  "created": 1533204620,
  "data": {
    "object": {
      "id": "cus_123",
      "object": "customer",
      "created": 123456789,
      "email": "test@stripe.com",
      "livemode": false,
      "metadata": {}
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {
    "id": "req_123",
    "idempotency_key": "idempotency-key-123"
  },
  "type": "customer.created"
}
"""


def stripe_check(header: str, body: bytes = STRIPE_BODY, now: float = STRIPE_TS + 100) -> Verified:
    return check(
        "stripe", secret=STRIPE_SECRET, headers=[("stripe-signature", header)], body=body, now=now
    )


def test_stripe_published_example_verifies() -> None:
    got = stripe_check(STRIPE_HEADER)
    assert (got.delivery_id, got.event_type) == ("evt_123", "customer.created")
    assert got.payload["request"]["idempotency_key"] == "idempotency-key-123"


def test_stripe_published_example_refused_outside_tolerance_or_altered() -> None:
    with pytest.raises(Refused) as late:
        stripe_check(STRIPE_HEADER, now=STRIPE_TS + TOLERANCE + 100)
    assert late.value.reason == "stale_timestamp"
    with pytest.raises(Refused) as altered:
        stripe_check(STRIPE_HEADER, body=STRIPE_BODY + b"this_changes_the_json")
    assert altered.value.reason == "bad_signature"


def test_stripe_any_v1_passes_and_v0_alone_never_does() -> None:
    good = STRIPE_HEADER.split(",")[1]
    rolled = f"t={STRIPE_TS},v1={'0' * 64},{good}"
    assert stripe_check(rolled).delivery_id == "evt_123"
    # A v0 that matches (a downgrade) proves nothing: Stripe's live scheme is v1.
    downgraded = f"t={STRIPE_TS},v0={good.removeprefix('v1=')}"
    with pytest.raises(Refused) as caught:
        stripe_check(downgraded)
    assert caught.value.reason == "missing_signature"
    for header in (f"t={STRIPE_TS}", good, f"t={STRIPE_TS},t={STRIPE_TS},{good}", "bad_header"):
        with pytest.raises(Refused):
            stripe_check(header)


# GitHub: docs.github.com "Validating webhook deliveries", "Testing the webhook payload validation".
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def github_headers(signature: str = GITHUB_SIGNATURE, **extra: str) -> list[tuple[str, str]]:
    headers = {
        "x-hub-signature-256": signature,
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-github-event": "issues",
        **extra,
    }
    return list(headers.items())


def test_github_published_example_signature_verifies() -> None:
    # The docs' payload "Hello, World!" is no JSON: its signature holds (400, not 401)...
    got = refused(
        "github-sha256",
        secret=GITHUB_SECRET,
        headers=github_headers(),
        body=b"Hello, World!",
        now=NOW,
    )
    assert (got.status, got.reason) == (400, "malformed")
    # ...where the same request with another secret or another body is unsigned (401).
    for secret, body in (
        ("It's a Secret to Everybody!", b"Hello, World!"),
        (GITHUB_SECRET, b"Hello, World?"),
    ):
        got = refused("github-sha256", secret=secret, headers=github_headers(), body=body, now=NOW)
        assert (got.status, got.reason) == (401, "bad_signature")
    assert "sha256=" + senders.hmac_hex(GITHUB_SECRET, b"Hello, World!") == GITHUB_SIGNATURE


def test_github_event_type_delivery_id_and_form_body() -> None:
    body = json.dumps({"action": "labeled", "issue": {"number": 1}}).encode()
    headers = senders.github("s3cret", body, "d-1", "issues")
    got = check("github-sha256", secret="s3cret", headers=headers, body=body, now=0)
    assert (got.delivery_id, got.event_type, got.payload["issue"]) == (
        "d-1",
        "issues.labeled",
        {"number": 1},
    )
    form = b"payload=" + body.replace(b" ", b"+")
    got = check(
        "github-sha256",
        secret="s3cret",
        headers=senders.github("s3cret", form, "d-2", "issues"),
        body=form,
        now=0,
    )
    assert (got.delivery_id, got.event_type) == ("d-2", "issues.labeled")
    ping = b'{"zen":"Design for failure.","hook_id":1}'
    got = check(
        "github-sha256",
        secret="s3cret",
        headers=senders.github("s3cret", ping, "d-3", "ping"),
        body=ping,
        now=0,
    )
    assert got.event_type == "ping"


def test_github_without_delivery_id_or_event_is_malformed() -> None:
    body = b"{}"
    for dropped in ("x-github-delivery", "x-github-event"):
        headers = [h for h in senders.github("s", body, "d", "push") if h[0] != dropped]
        got = refused("github-sha256", secret="s", headers=headers, body=body, now=NOW)
        assert (got.status, got.reason) == (400, "malformed")


# The generic scheme: the worked example of docs/webhooks-schemes.md.
GENERIC_BODY = b'{"type":"thing.happened","data":{"id":1}}'
GENERIC_SIGNATURE = "sha256=6a255ceea14ae154c999c9698ba3ee5b9d9a47c00118f501e34d4f6feaa0417c"


def test_generic_documented_example_verifies() -> None:
    assert GENERIC_SIGNATURE in (ROOT / "docs" / "webhooks-schemes.md").read_text()
    headers = [
        ("x-signature-timestamp", "1700000000"),
        ("x-delivery-id", "evt_0001"),
        ("x-signature-256", GENERIC_SIGNATURE),
    ]
    got = check(
        "hmac-sha256",
        secret="custom-sender-secret",
        headers=headers,
        body=GENERIC_BODY,
        now=1700000000,
    )
    assert (got.delivery_id, got.event_type, got.payload) == (
        "evt_0001",
        "thing.happened",
        {"type": "thing.happened", "data": {"id": 1}},
    )
    # The id is signed: the same delivery under another id, or none, is refused.
    for changed in (
        [*headers[:1], ("x-delivery-id", "evt_0002"), headers[2]],
        [headers[0], headers[2]],
    ):
        got_changed = refused(
            "hmac-sha256",
            secret="custom-sender-secret",
            headers=changed,
            body=GENERIC_BODY,
            now=1700000000,
        )
        assert got_changed.reason == "bad_signature"


def test_generic_without_id_uses_the_digest_and_rotation_lists_pass() -> None:
    headers = senders.generic("k", GENERIC_BODY, NOW, None)
    got = check("hmac-sha256", secret="k", headers=headers, body=GENERIC_BODY, now=NOW)
    assert got.delivery_id == senders.digest(f"{NOW}..".encode() + GENERIC_BODY)
    sig = dict(headers)["x-signature-256"]
    rotated = [headers[0], ("x-signature-256", f"sha256={'ab' * 32}, {sig}")]
    assert (
        check("hmac-sha256", secret="k", headers=rotated, body=GENERIC_BODY, now=NOW).delivery_id
        == got.delivery_id
    )
    dotted = senders.generic("k", GENERIC_BODY, NOW, "a.b")
    assert (
        refused("hmac-sha256", secret="k", headers=dotted, body=GENERIC_BODY, now=NOW).reason
        == "malformed"
    )
