"""Streams: listings a sync reads page by page, resumable at any page.

A connector declares its streams (``Connector.streams``); :meth:`Connector.read_page` reads one
page of one, given where the last committed page left off. A sync commits each page's records
and the position after it together, so a run killed at any point resumes at the next page: no
gap, and a repeated page is absorbed by an upsert on the primary key.

Incremental streams filter on a *replication key*, a field that grows whenever a record changes
(``updated_at``). The filter is inclusive (``updated_since`` means ``>=``): records updated at the
very instant of the last cursor are read again rather than lost, and the upsert drops the
repeats. A *lookback* re-reads a window before the cursor, for providers whose timestamps are
not strictly ordered with their commits.

A stream declares its *parameters* (:class:`Param`): what a sync passes with ``syncs add
--param NAME=VALUE`` (a channel, a repository). A parameter named in a ``{placeholder}`` of the
path fills that path segment, escaped like an action's (:func:`connectors.actions.fill_path`);
every other one is sent as a query parameter of every page.

A stream's *order* says how its listing comes: ``oldest_first`` (each page's commit may move the
cursor to the page's highest replication value), ``newest_first`` (the cursor moves only when a
run has read back to where the previous run began; pages commit their position alone meanwhile)
or ``delta`` (the provider hands a cursor of its own with the listing's last page, which replaces
the sync's cursor when the run finishes). :mod:`tasks.syncs` says how a run keeps each exact.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from spark_integrations.connectors.actions import fill_path, placeholders_of, sendable_problem
from spark_integrations.connectors.pagination import CursorPaginator, Paginator
from spark_integrations.errors import UsageError

__all__ = [
    "ORDERS",
    "PARAM_TYPES",
    "Page",
    "Param",
    "Stream",
    "below",
    "replication_order",
    "since_for",
]

#: How a stream's listing may come (see the module docstring).
ORDERS = ("oldest_first", "newest_first", "delta")
#: The type names a :class:`Param` may declare (JSON's).
PARAM_TYPES = ("string", "integer", "number", "boolean", "array", "object")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a JSON list",
    "object": "a JSON object",
}


@dataclass(frozen=True)
class Param:
    """One declared parameter of a stream (or, in ``describe()``, of an action).

    Attributes:
        name: the parameter's name (``--param NAME=VALUE``).
        required: a sync of the stream must give it.
        type: one of :data:`PARAM_TYPES`; a value given as text (from the command line) is
            read as that type (``"123"`` for an integer, ``true``/``false`` for a boolean,
            JSON for a list or an object).
        description: what it is, for people.
    """

    name: str
    required: bool = False
    type: str = "string"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a parameter needs a name.")
        if self.type not in PARAM_TYPES:
            raise ValueError(
                f"parameter {self.name}: type {self.type!r} is not one of {', '.join(PARAM_TYPES)}."
            )

    def read(self, value: Any, owner: str) -> Any:
        """``value`` as this parameter's type, or :class:`UsageError` in one sentence."""
        wrong = UsageError(f"param {self.name!r} of {owner} must be {_TYPE_WORDS[self.type]}.")
        if isinstance(value, str) and self.type != "string":
            value = _from_text(value, self.type, wrong)
        if self.type == "string":
            ok = isinstance(value, str)
        elif self.type == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type == "number":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        elif self.type == "boolean":
            ok = isinstance(value, bool)
        elif self.type == "array":
            ok = isinstance(value, list)
        else:
            ok = isinstance(value, dict)
        if not ok:
            raise wrong
        problem = sendable_problem(value)
        if problem is not None:
            raise UsageError(f"param {self.name!r} of {owner} {problem}, so it cannot be sent.")
        return value


def _from_text(text: str, kind: str, wrong: UsageError) -> Any:
    """A parameter's value given as text, read as ``kind`` (raising ``wrong`` when it is not)."""
    stripped = text.strip()
    if kind == "integer":
        if not _INTEGER.fullmatch(stripped) or len(stripped) > 30:
            raise wrong
        return int(stripped)
    if kind == "number":
        try:
            number = float(stripped)
        except ValueError:
            raise wrong from None
        if not math.isfinite(number):
            raise wrong
        return int(stripped) if _INTEGER.fullmatch(stripped) and len(stripped) <= 30 else number
    if kind == "boolean":
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise wrong
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        raise wrong from None


@dataclass(frozen=True)
class Stream:
    """One listing of a provider, as a sync reads it.

    Attributes:
        name: the stream's name (``syncs add CONNECTION STREAM``).
        path: the listing's path under the base URL.
        primary_key: the field that identifies a record (dotted for nested fields).
        replication_key: a field that grows whenever a record changes, ordered like the
            listing; ``None`` for a stream that can only be read in full.
        since_param: the query parameter filtering on the replication key, inclusive;
            ``None`` when the provider cannot filter (then every run reads everything).
        paginator: builds the paginator (``start_value``, ``page_size`` and ``connector``
            are passed as keywords, with ``paginator_options``).
        records_path: where the records are in a page's JSON body (``None``: the body).
        page_size: how many records a page is asked to hold.
        lookback: seconds re-read before the cursor on each incremental run.
        params: more query parameters of every page, fixed by the connector.
        parameters: what a sync of the stream passes (``--param NAME=VALUE``); one named in a
            ``{placeholder}`` of ``path`` fills that segment, the others are sent as query
            parameters of every page.
        order: ``oldest_first``, ``newest_first`` or ``delta`` (see the module docstring).
        budget: the connector's rate tier this stream's pages draw from (``tiers``), or
            ``None`` for the connection's own budget.
    """

    name: str
    path: str
    primary_key: str
    replication_key: str | None = None
    since_param: str | None = None
    paginator: Callable[..., Paginator] = CursorPaginator
    paginator_options: Mapping[str, Any] = field(default_factory=dict)
    records_path: str | None = "data"
    page_size: int = 100
    lookback: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)
    budget: str | None = None
    parameters: tuple[Param, ...] = ()
    order: str = "oldest_first"

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1.")
        if self.lookback < 0:
            raise ValueError("lookback must be >= 0 seconds.")
        if self.order not in ORDERS:
            raise ValueError(
                f"stream {self.name}: order {self.order!r} is not one of {', '.join(ORDERS)}."
            )
        if self.order == "newest_first" and self.replication_key is None:
            raise ValueError(f"stream {self.name}: a newest_first stream needs a replication_key.")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"stream {self.name}: a parameter is declared twice.")
        declared = {p.name: p for p in self.parameters}
        for key in placeholders_of(self.path):
            found = declared.get(key)
            if found is None:  # a config placeholder, filled by the connector
                continue
            if not found.required or found.type not in ("string", "integer"):
                raise ValueError(
                    f"stream {self.name}: placeholder {{{key}}} must be a required string or "
                    "integer parameter."
                )

    @property
    def path_parameters(self) -> tuple[str, ...]:
        """The parameters filling a ``{placeholder}`` of the path, in order."""
        declared = {p.name for p in self.parameters}
        return tuple(k for k in placeholders_of(self.path) if k in declared)

    def validate_params(self, params: Any) -> dict[str, Any]:
        """The sync's parameters checked against the declared ones and read as their types.

        Values may arrive as text (the command line): an integer parameter accepts ``"123"``.

        Raises:
            UsageError: in one sentence, for a missing required parameter, an unknown one, or
                a value that is not of its parameter's type (or cannot fill its path segment).
        """
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise UsageError(f"the params of stream {self.name} must be a JSON object.")
        owner = f"stream {self.name}"
        declared = {p.name: p for p in self.parameters}
        for key in params:
            if key not in declared:
                known = ", ".join(declared) or "none"
                shown = repr(key) if len(repr(key)) <= 60 else repr(key)[:56] + "...'"
                raise UsageError(f"{owner} takes no param {shown}; it takes {known}.")
        for param in self.parameters:
            if param.required and params.get(param.name) is None:
                raise UsageError(
                    f"{owner} needs the param {param.name!r} "
                    f"({_TYPE_WORDS[param.type]}): give it with --param {param.name}=VALUE."
                )
        checked = {
            key: declared[key].read(value, owner)
            for key, value in params.items()
            if value is not None
        }
        self.url_path(checked)
        return checked

    def url_path(self, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The path with its parameter placeholders filled, and the parameters left for the
        query (escaped like :meth:`connectors.actions.Action.url_path`)."""
        return fill_path(f"stream {self.name}", self.path, self.path_parameters, params)

    @property
    def incremental(self) -> bool:
        """True when a run can read only what changed since the last one."""
        return self.replication_key is not None and self.since_param is not None


@dataclass(frozen=True)
class Page:
    """One page read from a stream.

    Attributes:
        records: the records, in the provider's order.
        position: the paginator's position of the *next* page, to store with this page's
            records; ``None`` when this was the last page.
        finished: True when this was the last page.
        max_replication: the greatest replication-key value among the records (``None``
            without a replication key or without records).
        skipped: records left out because they had no primary key.
        min_replication: the smallest replication-key value among the records (a newest-first
            run without a ``since_param`` stops at the first page going below its ``since``).
        cursor: a delta stream's cursor, handed with the listing's last page (``None``
            otherwise).
    """

    records: list[dict[str, Any]]
    position: Any
    finished: bool
    max_replication: Any = None
    skipped: int = 0
    min_replication: Any = None
    cursor: Any = None


def since_for(cursor: Any, lookback: float) -> Any:
    """The filter value of an incremental run: the cursor, moved back by ``lookback`` seconds
    when it is an ISO-8601 time (other cursors are used as they are)."""
    if cursor is None or not lookback or not isinstance(cursor, str):
        return cursor
    try:
        when = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    except ValueError:
        return cursor
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    earlier = (when - timedelta(seconds=lookback)).astimezone(UTC)
    return earlier.isoformat(timespec="microseconds").replace("+00:00", "Z")


def replication_order(value: Any) -> tuple[int, Any]:
    """How replication values compare: numbers and numeric text (Slack's ``ts``, snowflakes)
    as numbers (kind 0), ISO-8601 times as instants (kind 1; without an offset, UTC), other
    values as text (kind 2). Text alone would put ``10.5Z`` before ``10Z``."""
    if isinstance(value, bool):
        return (2, str(value))
    if isinstance(value, int | float):
        return (0, Decimal(str(value)))
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            pass
        else:
            if number.is_finite():
                return (0, number)
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return (2, value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (1, when)
    return (2, json.dumps(value, sort_keys=True, default=str))


def below(value: Any, since: Any) -> bool:
    """True only when ``value`` is surely lower than ``since`` (:func:`replication_order`):
    values of different kinds say nothing, and are not below."""
    mine, theirs = replication_order(value), replication_order(since)
    return mine[0] == theirs[0] and bool(mine[1] < theirs[1])
