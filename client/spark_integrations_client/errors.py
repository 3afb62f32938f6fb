"""The client's errors: what went wrong with a task sent to the fleet, by what to do next.

::

    IntegrationsClientError
    ├── BrokerUnavailableError   the task could not be handed to the broker: nothing was sent
    ├── ResultTimeoutError       no result within the wait (also a ``TimeoutError``): the task
    │                            may still run; wait again with its ``task_id``
    ├── UnexpectedResultError    a result without the contract's shape
    └── TaskFailedError          the fleet failed the task; ``reason`` is its sentence
        ├── CallFailedError      ``integrations.call`` failed (dead letter written)
        │   └── UnknownConnectionError  no connection has that id
        └── SyncFailedError      a run of ``integrations.sync`` failed
            └── UnknownSyncError        no sync has that id

Bad arguments are refused before anything is sent, with a plain ``TypeError`` or
``ValueError`` of one sentence. A sync skipped because a run of it is in progress is no error:
it is a result (:class:`~spark_integrations_client.results.SyncSkipped`).
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailableError",
    "CallFailedError",
    "IntegrationsClientError",
    "ResultTimeoutError",
    "SyncFailedError",
    "TaskFailedError",
    "UnexpectedResultError",
    "UnknownConnectionError",
    "UnknownSyncError",
]


class IntegrationsClientError(Exception):
    """Raised when a task sent to the fleet could not be sent, did not finish, or failed."""


class BrokerUnavailableError(IntegrationsClientError):
    """Raised when the broker could not take the task: it was not sent."""


class ResultTimeoutError(IntegrationsClientError, TimeoutError):
    """Raised when a task's result did not come within the wait; the task may still run."""

    def __init__(self, task_id: str, timeout: float) -> None:
        self.task_id = task_id
        self.timeout = timeout
        super().__init__(
            f"task {task_id} did not finish within {timeout:g} s; it is still queued or "
            "running (is a fleet worker consuming its queue?)."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.task_id, self.timeout))


class UnexpectedResultError(IntegrationsClientError):
    """Raised when a task's result does not have the shape the contract gives it."""


class TaskFailedError(IntegrationsClientError):
    """Raised when the fleet failed a task; ``reason`` is the fleet's own sentence."""

    def __init__(self, reason: str, *, task_id: str = "", error_type: str = "") -> None:
        self.reason = reason
        self.task_id = task_id
        self.error_type = error_type
        super().__init__(reason)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.reason, dict(self.__dict__)))


class CallFailedError(TaskFailedError):
    """Raised when integrations.call failed; the fleet wrote a dead letter with the cause."""

    def __init__(
        self,
        reason: str,
        *,
        task_id: str = "",
        error_type: str = "",
        connection_id: str = "",
        action: str = "",
    ) -> None:
        self.connection_id = connection_id
        self.action = action
        super().__init__(reason, task_id=task_id, error_type=error_type)


class UnknownConnectionError(CallFailedError):
    """Raised when the fleet has no connection with the id a call named."""


class SyncFailedError(TaskFailedError):
    """Raised when a run of integrations.sync failed; the run's history holds the cause."""

    def __init__(
        self, reason: str, *, task_id: str = "", error_type: str = "", sync_id: str = ""
    ) -> None:
        self.sync_id = sync_id
        super().__init__(reason, task_id=task_id, error_type=error_type)


class UnknownSyncError(SyncFailedError):
    """Raised when the fleet has no sync with the id a trigger named."""


def _rebuild(cls: type[TaskFailedError], reason: str, state: dict[str, object]) -> TaskFailedError:
    """Unpickle a task failure with its attributes (keyword-only arguments defeat the default)."""
    error = cls.__new__(cls)
    Exception.__init__(error, reason)
    error.__dict__.update(state)
    return error
