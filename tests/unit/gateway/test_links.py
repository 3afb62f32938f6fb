"""Signing links and states: round trips, tampering, key rotation, separated purposes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from cryptography.fernet import Fernet

from spark_integrations.gateway.links import MAX_STATE_LENGTH, Signer, authorize_link, state_hash
from tests.unit.gateway.conftest import flip_last


def test_link_signature_round_trip_and_tampering(fernet_key: str) -> None:
    signer = Signer([fernet_key])
    sig = signer.sign_link("conn-1", "flow-1", 1_900_000_000)
    assert signer.link_ok("conn-1", "flow-1", 1_900_000_000, sig)
    assert not signer.link_ok("conn-2", "flow-1", 1_900_000_000, sig)
    assert not signer.link_ok("conn-1", "flow-2", 1_900_000_000, sig)
    assert not signer.link_ok("conn-1", "flow-1", 1_900_000_001, sig)
    assert not signer.link_ok("conn-1", "flow-1", 1_900_000_000, flip_last(sig))
    assert not signer.link_ok("conn-1", "flow-1", 1_900_000_000, "")
    # Parts are kept apart: moving a character from one part to the next changes the message.
    assert not signer.link_ok("conn-1f", "low-1", 1_900_000_000, sig)


def test_a_link_signed_by_another_fleet_is_refused(fernet_key: str) -> None:
    ours, theirs = Signer([fernet_key]), Signer([Fernet.generate_key().decode()])
    assert not ours.link_ok("c", "f", 1, theirs.sign_link("c", "f", 1))
    assert not ours.state_ok(theirs.new_state())


def test_rotation_signs_with_the_newest_key_and_verifies_with_any(fernet_key: str) -> None:
    new_key = Fernet.generate_key().decode()
    before = Signer([fernet_key])
    after = Signer([new_key, fernet_key])
    old_link, old_state = before.sign_link("c", "f", 9), before.new_state()
    assert after.link_ok("c", "f", 9, old_link)
    assert after.state_ok(old_state)
    # What the rotated fleet signs, a fleet holding only the new key verifies.
    assert Signer([new_key]).link_ok("c", "f", 9, after.sign_link("c", "f", 9))
    assert not before.link_ok("c", "f", 9, after.sign_link("c", "f", 9))


def test_state_round_trip_forgery_and_shape(fernet_key: str) -> None:
    signer = Signer([fernet_key])
    state = signer.new_state()
    nonce, _, sig = state.partition(".")
    assert len(nonce) >= 43 and sig
    assert signer.state_ok(state)
    assert signer.new_state() != state
    for forged in (
        nonce,
        nonce + ".",
        "." + sig,
        flip_last(nonce) + "." + sig,
        state + "x",
        "a" * (MAX_STATE_LENGTH + 1),
        "é.ü",
    ):
        assert not signer.state_ok(forged), forged


def test_a_link_signature_never_passes_as_a_state(fernet_key: str) -> None:
    signer = Signer([fernet_key])
    state = signer.new_state()
    nonce = state.partition(".")[0]
    # Same key material, other purpose: the link MAC over the nonce is not the state MAC.
    assert not signer.state_ok(f"{nonce}.{signer.sign_link(nonce, '', 0)}")


def test_state_hash_and_link_shape(fernet_key: str) -> None:
    assert len(state_hash("x.y")) == 64 and state_hash("x.y") != state_hash("x.z")
    link = authorize_link("http://gw.example/", "c/1", "f", 5, "s")
    parts = urlsplit(link)
    assert parts.path == "/oauth/c%2F1/authorize"
    assert parse_qs(parts.query) == {"flow": ["f"], "exp": ["5"], "sig": ["s"]}
    assert repr(Signer([fernet_key])) == "Signer(<keys hidden>)"
