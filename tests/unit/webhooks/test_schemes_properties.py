"""Generated deliveries for every scheme (hypothesis): correctly signed ones verify with the right
delivery id and payload; 1,000 bad ones per scheme (wrong secret, altered body, altered, stale
or garbage timestamp, missing, doubled or garbage headers, signed non-JSON, random bytes) are all
refused with 400 or 401 and no other exception."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spark_integrations.webhooks.schemes import REASONS, SCHEMES, Refused, verify
from tests.unit.webhooks import senders
from tests.unit.webhooks.senders import NOW, SIGNED_HEADERS, TIMESTAMP_HEADER, TOLERANCE, Sent

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
# Cheaper payloads for the bad deliveries, whose content hardly matters.
SMALL_JSON = st.dictionaries(
    st.text(max_size=6), st.none() | st.integers() | st.text(max_size=12), max_size=3
)
IDS = st.text(string.ascii_letters + string.digits + "_-:", min_size=1, max_size=40)
SECRETS = st.text(min_size=1, max_size=40)
KEYS = st.binary(min_size=32, max_size=32).map(Ed25519PrivateKey.from_private_bytes)
# Any text at all in a header: control characters, Latin-1, emoji, lone surrogates.
GARBAGE = st.text(st.characters(exclude_categories=()), max_size=80)
OFFSETS = st.integers(-TOLERANCE, TOLERANCE)


FIXED_KEY = Ed25519PrivateKey.from_private_bytes(b"k" * 32)


@st.composite
def deliveries(draw: st.DrawFn, scheme: str, payloads: st.SearchStrategy[Any] = JSON) -> Sent:
    """A delivery of ``scheme`` signed as its provider would, at a time within the tolerance."""
    return senders.make(
        scheme,
        draw(payloads),
        draw(IDS),
        secret=draw(SECRETS),
        key=draw(KEYS) if scheme == "discord-ed25519" else FIXED_KEY,
        ts=NOW + draw(OFFSETS),
    )


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=100, deadline=None, database=None)
@given(data=st.data())
def test_a_correctly_signed_delivery_verifies_with_its_id(scheme: str, data: st.DataObject) -> None:
    sent = data.draw(deliveries(scheme))
    got = verify(scheme, **sent.kwargs())
    assert got.delivery_id == sent.delivery_id
    assert got.payload == json.loads(sent.body) and got.answer is None
    assert got.event_type is not None


# --- bad deliveries -------------------------------------------------------------------------

#: What a refusal may be, per mutation: a status, and the reasons allowed (None: any).
EXPECTED: dict[str, tuple[int, set[str] | None]] = {
    "wrong_secret": (401, {"bad_signature"}),
    "altered_body": (401, {"bad_signature"}),
    "altered_timestamp": (401, {"bad_signature"}),
    "stale_timestamp": (401, {"stale_timestamp"}),
    "garbage_timestamp": (401, None),
    "missing_header": (401, None),
    "doubled_header": (400, {"doubled_header"}),
    "garbage_header": (401, None),
    "signed_non_json": (400, {"malformed"}),
    "random_body": (401, None),
    "random_request": (401, None),
}
GRAPH_EXPECTED: dict[str, tuple[int, set[str] | None]] = {
    "wrong_secret": (401, {"bad_signature"}),
    "altered_body": (401, {"missing_signature", "bad_signature"}),
    "missing_header": (401, {"missing_signature"}),
    "signed_non_json": (401, {"missing_signature"}),
    "random_body": (401, None),
    "random_request": (401, None),
}


def mutations(scheme: str) -> list[str]:
    if scheme == "ms-graph-client-state":
        return list(GRAPH_EXPECTED)
    names = list(EXPECTED)
    if scheme not in TIMESTAMP_HEADER and scheme != "stripe":
        names = [n for n in names if "timestamp" not in n]
    return names


def with_timestamp(sent: Sent, value: str) -> list[tuple[str, str]]:
    """``sent``'s headers with its timestamp header (Stripe: its ``t=``) replaced by ``value``."""
    if sent.scheme == "stripe":
        header = dict(sent.headers)["stripe-signature"]
        rest = header.split(",", 1)[1]
        return [("stripe-signature", f"t={value},{rest}")]
    name = TIMESTAMP_HEADER[sent.scheme]
    return [(n, value if n == name else v) for n, v in sent.headers]


def other_secret(draw: st.DrawFn, sent: Sent) -> str:
    if sent.scheme == "standard-webhooks":
        key = draw(st.binary(min_size=1, max_size=40))
        secret = "whsec_" + base64.b64encode(key).decode()
    else:
        secret = draw(SECRETS)
    assume(secret != sent.secret)
    return secret


def alter(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` changed somewhere: a byte replaced, inserted, or the end cut off."""
    at = draw(st.integers(0, len(body)))
    how = draw(st.sampled_from(["replace", "insert", "cut"]))
    byte = bytes([draw(st.integers(0, 255))])
    if how == "replace" and at < len(body):
        changed = body[:at] + byte + body[at + 1 :]
    elif how == "cut":
        changed = body[:at]
    else:
        changed = body[:at] + byte + body[at:]
    assume(changed != body)
    return changed


def graph_items(sent: Sent) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(sent.body)["value"]
    return items


@st.composite
def bad_deliveries(draw: st.DrawFn, scheme: str) -> tuple[str, Sent]:
    """One of ``scheme``'s valid deliveries spoiled by one mutation, and that mutation's name."""
    sent = draw(deliveries(scheme, SMALL_JSON))
    mutation = draw(st.sampled_from(mutations(scheme)))
    if scheme == "ms-graph-client-state":
        return mutation, graph_mutation(draw, sent, mutation)
    headers = list(sent.headers)
    body = sent.body
    if mutation == "wrong_secret":
        if scheme == "discord-ed25519":
            key = draw(KEYS)
            assume(senders.public_hex(key) != sent.secret)
            headers = senders.resign(sent, body, ts=_stamp(sent), key=key)
        else:
            headers = senders.resign(sent, body, ts=_stamp(sent), secret=other_secret(draw, sent))
    elif mutation == "altered_body":
        body = alter(draw, body)
    elif mutation == "altered_timestamp":
        moved = NOW + draw(OFFSETS)
        assume(moved != _stamp(sent))
        headers = with_timestamp(sent, str(moved))
    elif mutation == "stale_timestamp":
        late = draw(st.integers(TOLERANCE + 1, 10**11))
        stamp = NOW + late if draw(st.booleans()) else NOW - min(late, NOW)
        headers = senders.resign(sent, body, ts=stamp)
    elif mutation == "garbage_timestamp":
        value = draw(GARBAGE)
        assume(value != str(_stamp(sent)))
        headers = with_timestamp(sent, value)
    elif mutation == "missing_header":
        # Only the signed headers: GitHub's unsigned ones are the next test's.
        name = draw(st.sampled_from(SIGNED_HEADERS[scheme]))
        headers = [(n, v) for n, v in headers if n != name]
    elif mutation == "doubled_header":
        name, value = draw(st.sampled_from(headers))
        again = draw(st.one_of(st.just(value), GARBAGE))
        headers.insert(
            draw(st.integers(0, len(headers))), (draw(st.sampled_from([name, name.upper()])), again)
        )
    elif mutation == "garbage_header":
        name = draw(st.sampled_from(SIGNED_HEADERS[scheme]))
        value = draw(GARBAGE)
        assume(value != dict(headers)[name])
        headers = [(n, value if n == name else v) for n, v in headers]
    elif mutation == "signed_non_json":
        body = b"{" + draw(st.binary(max_size=60))
        assume(not _is_json(body))
        headers = senders.resign(sent, body, ts=_stamp(sent))
    elif mutation == "random_body":
        body = draw(st.binary(max_size=200))
        assume(body != sent.body)
    elif mutation == "random_request":
        headers = draw(st.lists(st.tuples(st.text(max_size=20), GARBAGE), max_size=6))
        body = draw(st.binary(max_size=200))
    return mutation, Sent(scheme, sent.secret, tuple(headers), body, sent.delivery_id)


def graph_mutation(draw: st.DrawFn, sent: Sent, mutation: str) -> Sent:
    items = graph_items(sent)
    if mutation == "wrong_secret":
        items[0]["clientState"] = other_secret(draw, sent)
        body = senders.dumps({"value": items})
    elif mutation == "altered_body":
        extra = {"changeType": "created", "clientState": draw(st.one_of(st.none(), JSON))}
        assume(extra["clientState"] != sent.secret)
        items.insert(draw(st.integers(0, len(items))), extra)
        body = senders.dumps({"value": items})
    elif mutation == "missing_header":
        del items[0]["clientState"]
        body = senders.dumps({"value": items})
    elif mutation == "signed_non_json":
        body = b"{" + draw(st.binary(max_size=60))
        assume(not _is_json(body))
    else:
        body = draw(st.binary(max_size=200))
        assume(body != sent.body)
    headers = draw(st.lists(st.tuples(st.text(max_size=20), GARBAGE), max_size=4))
    return Sent(sent.scheme, sent.secret, tuple(headers), body, sent.delivery_id)


def _stamp(sent: Sent) -> int:
    if sent.scheme == "stripe":
        return int(dict(sent.headers)["stripe-signature"].split(",")[0].removeprefix("t="))
    name = TIMESTAMP_HEADER.get(sent.scheme)
    return int(dict(sent.headers)[name]) if name else NOW


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=1000, deadline=None, database=None)
@given(data=st.data())
def test_no_bad_delivery_verifies(scheme: str, data: st.DataObject) -> None:
    mutation, bad = data.draw(bad_deliveries(scheme))
    with pytest.raises(Refused) as caught:
        verify(scheme, **bad.kwargs())
    refusal = caught.value
    # Refused on purpose, not a defect turned into a refusal by the last resort of verify().
    assert refusal.__cause__ is None, repr(refusal.__cause__)
    assert refusal.reason in REASONS
    status, reasons = (GRAPH_EXPECTED if scheme == "ms-graph-client-state" else EXPECTED)[mutation]
    if mutation == "random_request":
        # Random headers may name one of the scheme's twice: 400 then.
        assert refusal.status in (400, 401), (mutation, refusal.reason)
    else:
        assert refusal.status == status, (mutation, refusal.reason, str(refusal))
    if reasons is not None:
        assert refusal.reason in reasons, (mutation, refusal.reason, str(refusal))


@settings(max_examples=100, deadline=None, database=None)
@given(sent=deliveries("github-sha256", SMALL_JSON), data=st.data())
def test_github_without_its_unsigned_headers_is_refused(sent: Sent, data: st.DataObject) -> None:
    # GitHub signs only the body: without its delivery id or event name a delivery is unusable.
    name = data.draw(st.sampled_from(["x-github-delivery", "x-github-event"]))
    empty = data.draw(st.booleans())
    headers = [(n, "" if n == name else v) for n, v in sent.headers if n != name or empty]
    with pytest.raises(Refused) as caught:
        verify("github-sha256", **sent.kwargs(headers=headers))
    assert (caught.value.status, caught.value.reason) == (400, "malformed")
