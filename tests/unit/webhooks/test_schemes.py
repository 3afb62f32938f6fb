"""What every webhook scheme does alike: secrets, unknown schemes, the tolerance, doubled headers,
non-JSON and strict JSON, limits of the store, pickling, and the last resort for defects.
Published examples are in test_schemes_hmac.py and test_schemes_handshakes.py; generated
deliveries in test_schemes_properties.py."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest

from spark_integrations.webhooks import schemes
from spark_integrations.webhooks.schemes import SCHEMES, Refused, Verified, verify
from tests.unit.webhooks import senders
from tests.unit.webhooks.checks import refused
from tests.unit.webhooks.senders import NOW, TEST_KEY, TOLERANCE

ROOT = Path(__file__).resolve().parents[3]


def test_schemes_are_the_manifest_enum_without_none() -> None:
    schema = json.loads((ROOT / "connectors" / "manifest.schema.json").read_text())
    enum = _find_enum(schema)
    assert "none" in enum and set(SCHEMES) == set(enum) - {"none"}


def _find_enum(node: Any) -> list[str]:
    if isinstance(node, dict):
        if "scheme" in node and isinstance(node["scheme"], dict) and "enum" in node["scheme"]:
            return list(node["scheme"]["enum"])
        for value in node.values():
            found = _find_enum(value)
            if found:
                return found
    return []


def valid(scheme: str) -> senders.Sent:
    return senders.make(scheme, {"n": 1}, "evt_1", secret="sekret-value", key=TEST_KEY)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_valid_delivery_verifies_with_headers_in_any_case(scheme: str) -> None:
    sent = valid(scheme)
    assert verify(scheme, **sent.kwargs()).delivery_id == sent.delivery_id
    shouted = [(name.upper(), value) for name, value in sent.headers]
    assert verify(scheme, **sent.kwargs(headers=shouted)).delivery_id == sent.delivery_id


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("secret", [None, ""])
def test_no_secret_is_refused(scheme: str, secret: str | None) -> None:
    with pytest.raises(Refused) as caught:
        verify(scheme, **valid(scheme).kwargs(secret=secret))
    assert (caught.value.status, caught.value.reason) == (401, "no_secret")


@pytest.mark.parametrize("scheme", ["none", "", "STRIPE", "github"])
def test_unknown_schemes_are_refused(scheme: str) -> None:
    with pytest.raises(Refused) as caught:
        verify(scheme, **valid("stripe").kwargs())
    assert (caught.value.status, caught.value.reason) == (400, "unknown_scheme")


@pytest.mark.parametrize(
    "scheme", [s for s in SCHEMES if s in senders.TIMESTAMP_HEADER or s == "stripe"]
)
def test_the_tolerance_holds_both_ways_to_the_second(scheme: str) -> None:
    for offset, ok in (
        (TOLERANCE, True),
        (-TOLERANCE, True),
        (TOLERANCE + 1, False),
        (-TOLERANCE - 1, False),
    ):
        sent = senders.make(scheme, {}, "evt_1", secret="sekret", key=TEST_KEY, ts=NOW + offset)
        if ok:
            assert verify(scheme, **sent.kwargs()).delivery_id == "evt_1"
        else:
            with pytest.raises(Refused) as caught:
                verify(scheme, **sent.kwargs())
            assert caught.value.reason == "stale_timestamp"
        # The tolerance given is the one applied: none at all refuses any offset.
        if offset:
            with pytest.raises(Refused):
                verify(scheme, **sent.kwargs(tolerance=0))


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "ms-graph-client-state"])
def test_a_doubled_header_is_refused_even_with_the_same_value(scheme: str) -> None:
    sent = valid(scheme)
    for header in sent.headers:
        with pytest.raises(Refused) as caught:
            verify(scheme, **sent.kwargs(headers=[*sent.headers, header]))
        assert (caught.value.status, caught.value.reason) == (400, "doubled_header")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signed_non_json_is_400_and_unsigned_is_401(scheme: str) -> None:
    sent = valid(scheme)
    body = b"not json {"
    if scheme == "ms-graph-client-state":
        assert refused(scheme, **sent.kwargs(body=body)).status == 401  # nothing signed it
        return
    signed = senders.resign(sent, body)
    assert refused(scheme, **sent.kwargs(headers=signed, body=body)).reason == "malformed"
    assert refused(scheme, **sent.kwargs(body=body)).status == 401


def test_json_that_is_not_strict_is_refused() -> None:
    for body in (
        b'{"type": NaN}',
        b'{"type": "a", "x": Infinity}',
        b"[" * 100_000,
        b'{"a": "\xff"}',
    ):
        sent = valid("hmac-sha256")
        got = refused("hmac-sha256", **sent.kwargs(headers=senders.resign(sent, body), body=body))
        assert (got.status, got.reason) == (400, "malformed")


def test_ids_and_types_the_store_cannot_hold_are_malformed() -> None:
    for doc in ({"type": "x" * 201}, {"type": "a\x00b"}):
        body = json.dumps(doc).encode()
        sent = valid("standard-webhooks")
        got = refused(
            "standard-webhooks", **sent.kwargs(headers=senders.resign(sent, body), body=body)
        )
        assert got.reason == "malformed"
    long_id = "msg_" + "x" * 200
    secret = valid("standard-webhooks").secret
    headers = senders.standard_webhooks(secret, b"{}", long_id, NOW)
    assert (
        refused("standard-webhooks", secret=secret, headers=headers, body=b"{}", now=NOW).status
        == 400
    )


def test_a_large_body_verifies() -> None:
    big = {"blob": "x" * 2_000_000}
    sent = senders.make("stripe", big, "evt_big", secret="s", key=TEST_KEY)
    assert verify("stripe", **sent.kwargs()).payload["data"]["object"] == big


def test_refused_pickles_and_never_quotes_the_secret() -> None:
    sent = valid("stripe")
    with pytest.raises(Refused) as caught:
        verify("stripe", **sent.kwargs(secret="another-secret-value"))
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.status, again.reason, str(again)) == (401, "bad_signature", str(caught.value))
    assert "secret-value" not in str(caught.value) and "sekret" not in str(caught.value)


def test_a_defect_becomes_a_400_and_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(delivery: Any) -> Verified:
        raise KeyError("webhook-id")

    monkeypatch.setitem(schemes._VERIFIERS, "stripe", broken)
    with caplog.at_level(logging.ERROR, logger="webhooks"), pytest.raises(Refused) as caught:
        verify("stripe", **valid("stripe").kwargs())
    assert (caught.value.status, caught.value.reason) == (400, "malformed")
    assert "KeyError" in caplog.text and "sekret" not in caplog.text
