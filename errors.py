"""The fleet's one error tree.

Every error the fleet raises on purpose derives from :class:`IntegrationError`, and branches by
what the caller must do next::

    IntegrationError
    ├── ConfigurationError      bad or missing configuration: fix the environment, then restart
    ├── UsageError              bad input from a person or a caller: fix the input
    │   └── NotFoundError       the named object does not exist
    ├── StoreError              the store is unreachable or behind its newest migration
    ├── SecretError             a secret cannot be decrypted with the configured keys
    └── PoisonMessageError      a message killed its worker on every delivery

Messages are one plain sentence naming what is wrong, and never carry a secret.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "IntegrationError",
    "NotFoundError",
    "PoisonMessageError",
    "SecretError",
    "StoreError",
    "UsageError",
]


class IntegrationError(Exception):
    """Raised when the fleet refuses or fails an operation on purpose."""


class ConfigurationError(IntegrationError):
    """Raised when the environment holds an invalid or missing setting."""


class UsageError(IntegrationError):
    """Raised when a command or task is given input it cannot accept."""


class NotFoundError(UsageError):
    """Raised when a named connection, sync or record does not exist."""


class StoreError(IntegrationError):
    """Raised when the store cannot be reached or is not at its newest migration."""


class SecretError(IntegrationError):
    """Raised when a stored secret cannot be decrypted with the configured keys."""


class PoisonMessageError(IntegrationError):
    """Raised when a message was delivered too many times without its task finishing."""
