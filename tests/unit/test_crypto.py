"""SecretBox: Fernet over a list of keys, newest first, with rotation and quiet errors."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from spark_integrations.errors import SecretError
from spark_integrations.store.crypto import SecretBox


def new_key() -> str:
    return Fernet.generate_key().decode()


def test_round_trip_str(fernet_key: str) -> None:
    box = SecretBox([fernet_key])
    token = box.encrypt("s3cret-välue ✓")
    assert isinstance(token, bytes)
    assert b"s3cret" not in token
    assert box.decrypt(token) == "s3cret-välue ✓"


def test_round_trip_json(fernet_key: str) -> None:
    box = SecretBox([fernet_key])
    value = {"api_key": "k-123", "password": "p", "nested": {"n": 1}}
    token = box.encrypt_json(value)
    assert b"k-123" not in token
    assert box.decrypt_json(token) == value


def test_decrypt_accepts_memoryview(fernet_key: str) -> None:
    # Some drivers hand binary columns back as memoryview.
    box = SecretBox([fernet_key])
    token = box.encrypt("x")
    assert box.decrypt(memoryview(token)) == "x"  # type: ignore[arg-type]


def test_each_encryption_differs(fernet_key: str) -> None:
    box = SecretBox([fernet_key])
    assert box.encrypt("same") != box.encrypt("same")


def test_old_key_still_decrypts_after_new_key_prepended() -> None:
    old, new = new_key(), new_key()
    token = SecretBox([old]).encrypt_json({"api_key": "A"})
    both = SecretBox([new, old])
    assert both.decrypt_json(token) == {"api_key": "A"}
    # New encryptions use the newest key: the new key alone reads them.
    assert SecretBox([new]).decrypt(both.encrypt("fresh")) == "fresh"


def test_rotate_reencrypts_under_newest_key() -> None:
    old, new = new_key(), new_key()
    token = SecretBox([old]).encrypt("rotate me")
    with pytest.raises(SecretError):
        SecretBox([new]).decrypt(token)
    rotated = SecretBox([new, old]).rotate(token)
    assert rotated != token
    assert SecretBox([new]).decrypt(rotated) == "rotate me"
    with pytest.raises(SecretError):
        SecretBox([old]).decrypt(rotated)


def test_token_of_removed_key_raises_secret_error_without_key_material() -> None:
    old, new = new_key(), new_key()
    token = SecretBox([old]).encrypt("payload-text")
    box = SecretBox([new])
    for operation in (box.decrypt, box.decrypt_json, box.rotate):
        with pytest.raises(SecretError) as info:
            operation(token)
        text = str(info.value) + repr(info.value)
        assert old not in text
        assert new not in text
        assert token.decode() not in text
        assert "payload-text" not in text
        # No chained exception carries details either.
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__


@pytest.mark.parametrize("garbage", [b"", b"not-a-token", b"gAAAAA" + b"A" * 80])
def test_garbage_token_raises_secret_error(fernet_key: str, garbage: bytes) -> None:
    with pytest.raises(SecretError):
        SecretBox([fernet_key]).decrypt(garbage)


def test_decrypt_json_refuses_non_object(fernet_key: str) -> None:
    box = SecretBox([fernet_key])
    with pytest.raises(SecretError):
        box.decrypt_json(box.encrypt("[1, 2]"))


def test_no_key_refused() -> None:
    with pytest.raises(SecretError):
        SecretBox([])


def test_repr_hides_keys() -> None:
    old, new = new_key(), new_key()
    box = SecretBox([new, old])
    for text in (repr(box), str(box)):
        assert new not in text
        assert old not in text
    assert "SecretBox" in repr(box)


def test_is_current_only_for_tokens_of_the_newest_key() -> None:
    old, new = new_key(), new_key()
    old_token = SecretBox([old]).encrypt("x")
    both = SecretBox([new, old])
    assert not both.is_current(old_token)
    assert both.is_current(both.encrypt("x"))
    assert both.is_current(both.rotate(old_token))
    assert not both.is_current(b"not-a-token")
    # Still decryptable with the whole list: not current is not unreadable.
    assert both.decrypt(old_token) == "x"
