"""The fleet's one error tree.

Every error the fleet raises on purpose derives from :class:`IntegrationError`, and branches by
what the caller must do next::

    IntegrationError
    ├── ConfigurationError      bad or missing configuration: fix the environment, then restart
    ├── UsageError              bad input from a person or a caller: fix the input
    │   └── NotFoundError       the named object does not exist
    ├── StoreError              the store is unreachable or behind its newest migration
    ├── SecretError             a secret cannot be decrypted with the configured keys
    ├── PoisonMessageError      a message killed its worker on every delivery
    ├── CallFailedError         integrations.call gave up; its dead letter holds the cause
    ├── SyncFailedError         a run of integrations.sync failed; its history holds the cause
    └── ProviderError           a provider answered badly, or not at all (carries connector, status)
        ├── RetriableError      try again later: 5xx, network errors, garbage bodies
        │   │                   (``retry_after``: the provider's own wait, when it gave one;
        │   │                   ``maybe_applied``: the request may have taken effect)
        │   └── RateLimitedError  the provider answered 429
        ├── AuthenticationError the provider refused the credentials (401): re-authenticate once
        │   ├── InvalidGrantError  the token endpoint refused a grant (a refresh token, a code)
        │   └── NeedsReauthError   the connection's tokens are lost: connect it again
        ├── FatalError          any other refusal (4xx): retrying cannot help
        │   └── PaginationLoopError  a paginator was handed a page token it had already seen
        └── SkippableError      one record cannot be used; skip it and go on

Library exceptions (``requests``, ``redis``, SQLAlchemy) are translated into this tree once, at
the boundary where they are caught. Messages are one plain sentence naming what is wrong, and
never carry a secret: a provider's answer is quoted only by status and a short, bounded excerpt.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "CallFailedError",
    "ConfigurationError",
    "FatalError",
    "IntegrationError",
    "InvalidGrantError",
    "NeedsReauthError",
    "NotFoundError",
    "PaginationLoopError",
    "PoisonMessageError",
    "ProviderError",
    "RateLimitedError",
    "RetriableError",
    "SecretError",
    "SkippableError",
    "StoreError",
    "SyncFailedError",
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


class CallFailedError(IntegrationError):
    """Raised when integrations.call gives up; the dead letter holds the same cause."""


class SyncFailedError(IntegrationError):
    """Raised when a run of integrations.sync fails; the run's history holds the same cause."""


class ProviderError(IntegrationError):
    """Raised when a provider answers with an error, or does not answer at all.

    Attributes:
        connector: name of the connector that made the request.
        status: the HTTP status of the answer, or ``None`` when there was no answer.
        response: the ``requests.Response`` when there was one (never logged or serialised).
    """

    def __init__(
        self,
        message: str,
        *,
        connector: str = "",
        status: int | None = None,
        response: Any = None,
    ) -> None:
        super().__init__(message)
        self.connector = connector
        self.status = status
        self.response = response

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and Celery's exception serialisation rebuild from the message alone: the
        # response object stays behind.
        return (type(self), (str(self),))


class RetriableError(ProviderError):
    """Raised when a request failed in a way that trying again later can fix."""

    def __init__(
        self,
        message: str,
        *,
        connector: str = "",
        status: int | None = None,
        response: Any = None,
        retry_after: float | None = None,
        maybe_applied: bool = False,
    ) -> None:
        super().__init__(message, connector=connector, status=status, response=response)
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied


class RateLimitedError(RetriableError):
    """Raised when the provider answered 429 Too Many Requests."""


class AuthenticationError(ProviderError):
    """Raised when the provider refused the credentials (401)."""


class InvalidGrantError(AuthenticationError):
    """Raised when the token endpoint refused a grant: a used, revoked or unknown refresh token
    or authorisation code (``invalid_grant``)."""


class NeedsReauthError(AuthenticationError):
    """Raised when a connection's tokens can no longer be used and a person must connect it
    again (its status is then ``needs_reauth``)."""


class FatalError(ProviderError):
    """Raised when the provider refused a request that retrying cannot fix."""


class PaginationLoopError(FatalError):
    """Raised when a paginator is handed a page token it has already followed."""


class SkippableError(ProviderError):
    """Raised when one record cannot be used and the rest of the work can go on."""
