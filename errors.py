"""The fleet's one error tree.

Every error the fleet raises on purpose derives from :class:`IntegrationError`, and branches by
what the caller must do next::

    IntegrationError
    ├── ConfigurationError      bad or missing configuration: fix the environment, then restart
    │   └── ManifestError       a connector manifest is invalid (one sentence per problem)
    ├── UsageError              bad input from a person or a caller: fix the input
    │   └── NotFoundError       the named object does not exist
    ├── StoreError              the store is unreachable, refused a statement, or is behind its
    │                           newest migration
    ├── CoordinationError       the coordination Redis is unreachable or failed: try again later
    ├── ServiceError            a process or service the fleet runs or sends to (the embedded
    │                           Redis, a child process, a socket, the broker) failed
    ├── WaitTimeoutError        a command waited for the fleet's work longer than allowed
    ├── SecretError             a secret cannot be decrypted with the configured keys
    ├── PoisonMessageError      a message killed its worker on every delivery
    ├── CallFailedError         integrations.call gave up; its dead letter holds the cause
    ├── SyncFailedError         a run of integrations.sync failed; its history holds the cause
    ├── WebhookFailedError      processing a webhook event gave up; the event holds the cause
    ├── SkippableError          one record cannot be used; skip it and go on
    └── ProviderError           a provider answered badly, or not at all (carries connector,
        │                       status and ``maybe_applied``: the request may have taken effect)
        ├── RetriableError      try again later: 5xx, network errors, garbage bodies
        │   │                   (``retry_after``: the provider's own wait, when it gave one)
        │   └── RateLimitedError  the provider answered 429
        ├── AuthenticationError the provider refused the credentials (401): re-authenticate once
        │   ├── InvalidGrantError  the token endpoint refused a grant (a refresh token, a code)
        │   └── NeedsReauthError   the connection's tokens are lost: connect it again
        └── FatalError          any other refusal (4xx): retrying cannot help
            └── PaginationLoopError  a paginator was handed a page token it had already seen

Library exceptions are translated into this tree once, at the boundary where they are caught:
SQLAlchemy's in the store session (:func:`store.engine.session_scope`), redis-py's in the
coordination client (:mod:`coordination.client`), ``requests``' in the HTTP sender
(:func:`connectors.http.send`). Nothing raises :class:`IntegrationError` itself: each error says
which branch it is on.

Messages are one plain sentence naming what is wrong, and never carry a secret: a provider's
answer is quoted only by status and a short, bounded excerpt. An error travels as its type and
message alone (Celery's JSON results, dead letters, Flower), so a :class:`ProviderError` made
with a connector ends its message with what the caller needs to know, e.g.
``[sandbox: status 502, may have been applied]`` or ``[sandbox: no answer, not applied]``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "CallFailedError",
    "ConfigurationError",
    "CoordinationError",
    "FatalError",
    "IntegrationError",
    "InvalidGrantError",
    "ManifestError",
    "NeedsReauthError",
    "NotFoundError",
    "PaginationLoopError",
    "PoisonMessageError",
    "ProviderError",
    "RateLimitedError",
    "RetriableError",
    "SecretError",
    "ServiceError",
    "SkippableError",
    "StoreError",
    "SyncFailedError",
    "UsageError",
    "WaitTimeoutError",
    "WebhookFailedError",
]


class IntegrationError(Exception):
    """Raised when the fleet refuses or fails an operation on purpose."""


class ConfigurationError(IntegrationError):
    """Raised when the environment holds an invalid or missing setting."""


class ManifestError(ConfigurationError):
    """Raised when a connector manifest cannot be loaded: its message lists every problem, one
    sentence each (``FILE: key.path: what is wrong``); ``problems`` holds them."""

    def __init__(self, problems: list[str] | tuple[str, ...] | str) -> None:
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


class UsageError(IntegrationError):
    """Raised when a command or task is given input it cannot accept."""


class NotFoundError(UsageError):
    """Raised when a named connection, sync or record does not exist."""


class StoreError(IntegrationError):
    """Raised when the store cannot be reached, refuses a statement, or is behind its newest
    migration."""


class CoordinationError(IntegrationError):
    """Raised when the coordination Redis cannot be reached or fails a command."""


class ServiceError(IntegrationError):
    """Raised when a process or service the fleet runs or sends to fails to start, stop, listen
    or take work."""


class WaitTimeoutError(IntegrationError):
    """Raised when a command waited for the fleet's work longer than it was allowed."""


class SecretError(IntegrationError):
    """Raised when a stored secret cannot be decrypted with the configured keys."""


class PoisonMessageError(IntegrationError):
    """Raised when a message was delivered too many times without its task finishing."""


class CallFailedError(IntegrationError):
    """Raised when integrations.call gives up; the dead letter holds the same cause."""


class SyncFailedError(IntegrationError):
    """Raised when a run of integrations.sync fails; the run's history holds the same cause."""


class WebhookFailedError(IntegrationError):
    """Raised when processing a webhook event gives up; the event and its dead letter hold the
    same cause."""


class SkippableError(IntegrationError):
    """Raised when one record cannot be used and the rest of the work can go on."""


class ProviderError(IntegrationError):
    """Raised when a provider answers with an error, or does not answer at all.

    Made with a ``connector``, the message ends with the connector, the status and whether the
    request may have been applied, so the text alone (all that a task result keeps) says it.

    Attributes:
        connector: name of the connector that made the request.
        status: the HTTP status of the answer, or ``None`` when there was no answer.
        maybe_applied: True when the request may have taken effect at the provider.
        response: the ``requests.Response`` when there was one (never logged or serialised).
    """

    def __init__(
        self,
        message: str,
        *,
        connector: str = "",
        status: int | None = None,
        response: Any = None,
        maybe_applied: bool = False,
    ) -> None:
        self.connector = connector
        self.status = status
        self.response = response
        self.maybe_applied = maybe_applied
        super().__init__(message + self.context() if connector else message)

    def context(self) -> str:
        """`` [connector: status N, may have been applied]``: what the message ends with."""
        answer = "no answer" if self.status is None else f"status {self.status}"
        applied = "may have been applied" if self.maybe_applied else "not applied"
        return f" [{self.connector}: {answer}, {applied}]"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling keeps the message (context included) and the attributes; the response stays
        # behind. Celery's JSON results keep the message alone, which says the same.
        state = {k: v for k, v in self.__dict__.items() if k != "response"}
        return (type(self), (str(self),), state)


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
        self.retry_after = retry_after
        super().__init__(
            message,
            connector=connector,
            status=status,
            response=response,
            maybe_applied=maybe_applied,
        )


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
