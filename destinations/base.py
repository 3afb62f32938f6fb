"""The destination interface and its registry.

A sync engine reads a page, hands it to :meth:`Destination.deliver` inside the transaction that
will also hold the page's cursor, and commits. A destination therefore has two ways to be safe:

* write into that transaction (the record store): the records and the cursor commit together;
* make the delivery durable elsewhere *before* returning, idempotently (a connector action:
  one call per new or changed record, each with an idempotency key derived from the record's
  key and content), so a page delivered again after a crash changes nothing.

A destination may take params (``syncs add --with NAME=TEMPLATE``): templates of the record's
fields (:mod:`destinations.templates`) that set what each delivery sends. Their syntax, and the
names a kind accepts (:attr:`Destination.param_names`), are checked when the destination is
built; names that depend on what the destination refers to (an action's params) by
:meth:`Destination.check`, when the sync is added.

A destination that sends (an action, a spark workflow) has a delivery mode (``syncs add
--deliver``): ``changes``, the default, sends each new or changed record version; ``new`` sends
only records the sync never delivered before (by primary key), so a record edited later (a
GitHub issue relabelled or retitled) is kept in the record store but not sent again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from spark_integrations.connectors.registry import BrokenPlugin
from spark_integrations.connectors.streams import Stream
from spark_integrations.constants import DESTINATION_ENTRY_POINT_GROUP
from spark_integrations.errors import UsageError

__all__ = [
    "DELIVER_CHANGES",
    "DELIVER_MODES",
    "DELIVER_NEW",
    "DESTINATION_ENTRY_POINT_GROUP",
    "Batch",
    "Delivered",
    "Destination",
    "DestinationRegistry",
    "destination_for",
    "destination_kinds",
    "discover_destinations",
    "register_destination",
]

#: The delivery modes (``syncs add --deliver``): every new or changed version, or new keys only.
DELIVER_CHANGES = "changes"
DELIVER_NEW = "new"
DELIVER_MODES = (DELIVER_CHANGES, DELIVER_NEW)


@dataclass(frozen=True)
class Batch:
    """One page of a sync, on its way to the destination."""

    sync_id: str
    run_id: str
    stream: Stream
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class Delivered:
    """What a page did at the destination: ``written`` records new or changed (a run's
    ``records``), ``sent`` requests or messages it caused (calls enqueued, say)."""

    written: int
    unchanged: int = 0
    sent: int = 0


class Destination(ABC):
    """Where a sync's pages go. Subclasses set :attr:`kind` and implement :meth:`deliver`."""

    kind: ClassVar[str] = ""
    #: The params ``--with`` may name: ``None`` for any (:meth:`check` decides), empty for none.
    param_names: ClassVar[frozenset[str] | None] = frozenset()
    #: The delivery modes this kind offers; one alone means ``--deliver`` is no choice here
    #: (the record store keeps every version of every record).
    deliver_modes: ClassVar[tuple[str, ...]] = (DELIVER_CHANGES,)

    def __init__(self, argument: str) -> None:
        self.argument = argument
        #: The sync's destination params, NAME -> template (:meth:`use_params`).
        self.params: dict[str, str] = {}
        #: The sync's delivery mode (:meth:`use_deliver`).
        self.deliver_mode: str = DELIVER_CHANGES

    @classmethod
    def chooses_delivery(cls) -> bool:
        """Whether ``--deliver`` means anything for this kind."""
        return len(cls.deliver_modes) > 1

    def use_deliver(self, mode: str) -> Destination:
        """Take the sync's delivery mode, or UsageError in one sentence; returns the
        destination."""
        if mode not in DELIVER_MODES:
            raise UsageError(
                f"--deliver takes {' or '.join(DELIVER_MODES)}, not {str(mode)[:60]!r}."
            )
        if mode not in self.deliver_modes:
            raise UsageError(
                f"--deliver {mode} does not apply to the {self.kind} destination; it is for "
                "destinations that send (action, spark)."
            )
        self.deliver_mode = mode
        return self

    def use_params(self, params: Mapping[str, str] | None) -> Destination:
        """Take the sync's destination params (``--with``): each a well-formed template of a
        name this kind accepts, or UsageError in one sentence; returns the destination."""
        from spark_integrations.destinations.templates import check_template

        if not isinstance(params, Mapping | None):
            raise UsageError("destination params must be an object of NAME -> template.")
        given = dict(params or {})
        allowed = self.param_names
        for name, template in given.items():
            if not isinstance(name, str) or not isinstance(template, str):
                raise UsageError("destination params must be an object of NAME -> template.")
            if allowed is not None and name not in allowed:
                takes = (
                    f"takes only {', '.join(sorted(allowed))}"
                    if allowed
                    else "takes no --with params"
                )
                raise UsageError(f"the {self.kind} destination {takes}; --with {name} is not one.")
            try:
                check_template(template)
            except UsageError as exc:
                raise UsageError(f"--with {name}: {exc}") from None
        self.params = given
        return self

    @classmethod
    def parse(cls, argument: str) -> Destination:
        """Build the destination from what follows ``KIND:`` (refuse a malformed one)."""
        if argument:
            raise UsageError(f"the {cls.kind} destination takes no argument; write {cls.kind!r}.")
        return cls(argument)

    @property
    def spec(self) -> str:
        """The destination as a sync stores it."""
        return f"{self.kind}:{self.argument}" if self.argument else self.kind

    def check(self, session: Session) -> None:  # noqa: B027 - optional hook
        """Check, when a sync is defined, what the destination refers to (nothing by default)."""

    @abstractmethod
    def deliver(self, session: Session, batch: Batch) -> Delivered:
        """Make ``batch`` durable at the destination; the caller then commits ``session``.

        Anything written through ``session`` commits with the page's cursor. Anything sent
        elsewhere must be sent before returning and be idempotent, since a page whose commit
        was lost is delivered again.
        """


_registry: dict[str, type[Destination]] = {}


@dataclass(frozen=True)
class DestinationRegistry:
    """The destination kinds known to this process, and the plugins that failed to load."""

    destinations: dict[str, type[Destination]]
    broken: tuple[BrokenPlugin, ...]


def register_destination(cls: type[Destination]) -> type[Destination]:
    """Register a destination class under its kind (a class decorator)."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} sets no kind.")
    _registry[cls.kind] = cls
    return cls


@cache
def discover_destinations() -> DestinationRegistry:
    """The built-in kinds and every entry point's, once per process.

    A plugin that fails to import, names no :class:`Destination` subclass, or whose class is of
    another kind is recorded as broken (``doctor`` reports it, as it does broken connectors),
    never silently skipped, and does not hide the others.
    """
    # Imported for their registrations: the built-in kinds (spark's imports builtin's).
    import spark_integrations.destinations.spark  # noqa: F401

    found = dict(_registry)
    broken: list[BrokenPlugin] = []
    for entry in entry_points(group=DESTINATION_ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not stop the others
            broken.append(BrokenPlugin(entry.name, entry.value, f"{type(exc).__name__}: {exc}"))
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Destination)):
            broken.append(
                BrokenPlugin(entry.name, entry.value, "does not name a Destination subclass")
            )
            continue
        if loaded.kind != entry.name:
            broken.append(
                BrokenPlugin(
                    entry.name,
                    entry.value,
                    f"its class is of kind {loaded.kind!r}, not {entry.name!r}",
                )
            )
            continue
        found.setdefault(entry.name, loaded)
    return DestinationRegistry(dict(sorted(found.items())), tuple(broken))


def destination_kinds() -> list[str]:
    """The destination kinds known to this process."""
    return list(discover_destinations().destinations)


def destination_for(
    spec: str, params: Mapping[str, str] | None = None, deliver: str = DELIVER_CHANGES
) -> Destination:
    """The destination a sync's ``destination`` text names, with the sync's destination
    ``params`` (``--with``) and delivery mode (``--deliver``), or UsageError saying why not."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(
            "a destination must be 'store', 'action:CONNECTION_ID:ACTION' or "
            "'spark:CONNECTION_ID:WORKFLOW_ID'."
        )
    kind, _, argument = spec.strip().partition(":")
    registry = discover_destinations()
    cls = registry.destinations.get(kind)
    if cls is None:
        for plugin in registry.broken:
            if plugin.name == kind:
                raise UsageError(
                    f"the destination plugin {kind!r} ({plugin.value}) is broken: {plugin.error}."
                )
        raise UsageError(
            f"unknown destination {kind!r}; the destinations are "
            f"{', '.join(registry.destinations)} (e.g. 'store' or 'action:CONNECTION_ID:ACTION')."
        )
    return cls.parse(argument).use_params(params).use_deliver(deliver)
