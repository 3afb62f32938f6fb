"""Secrets at rest: Fernet encryption over a list of keys, newest first.

:class:`SecretBox` encrypts with the newest key and decrypts with any of them (``MultiFernet``),
so keys can be rotated: prepend a new key, re-encrypt (``keys rotate``), then retire the old one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from spark_integrations.errors import SecretError

__all__ = ["SecretBox"]


class SecretBox:
    """Encrypts and decrypts the fleet's secrets with the configured Fernet keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretError("no secret key is configured.")
        fernets = [Fernet(k) for k in keys]
        self._newest = fernets[0]
        self._fernet = MultiFernet(fernets)

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"

    def encrypt(self, plaintext: str) -> bytes:
        """Encrypt one string under the newest key."""
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        """Decrypt one token made under any configured key."""
        try:
            return self._fernet.decrypt(bytes(token)).decode()
        except InvalidToken:
            raise SecretError(
                "a stored secret cannot be decrypted with SPARK_INTEGRATIONS_SECRET_KEYS "
                "(was the key that encrypted it removed?)."
            ) from None

    def encrypt_json(self, value: dict[str, Any]) -> bytes:
        """Encrypt a JSON object (a connection's secrets) as one token."""
        return self.encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def decrypt_json(self, token: bytes) -> dict[str, Any]:
        """Decrypt a token made by :meth:`encrypt_json`."""
        value = json.loads(self.decrypt(token))
        if not isinstance(value, dict):
            raise SecretError("a stored secret is not a JSON object.")
        return value

    def is_current(self, token: bytes) -> bool:
        """True when the newest key alone decrypts ``token`` (``keys rotate`` can leave it be)."""
        try:
            self._newest.decrypt(bytes(token))
        except InvalidToken:
            return False
        return True

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt a token under the newest key (its plaintext is unchanged)."""
        try:
            return self._fernet.rotate(bytes(token))
        except InvalidToken:
            raise SecretError(
                "a stored secret cannot be decrypted with SPARK_INTEGRATIONS_SECRET_KEYS."
            ) from None
