"""What a connector's incoming webhook events mean for its streams, and how event types match.

A connector declares, per event type pattern, the streams such an event changes
(``webhooks.events`` in a manifest, :attr:`ConnectorDeclaration.webhook_events` in Python)::

    webhooks:
      scheme: github-sha256
      events:
        issues:
          stream: issues
          params: {owner: "{repository.owner.login}", repo: "{repository.name}"}
        pull_request: [{stream: pull_requests}, {stream: issues}]

An event of a matching type that no route of the connection handles refreshes those streams: the
connection's enabled syncs of each stream run now (:mod:`webhooks.processing`). ``params`` narrows
that to the syncs whose stream parameter equals the template rendered from the event's payload
(the grammar of ``syncs add --with``: ``{field}``, ``{object.field}``, ``{list.0}``), so an event
of one repository refreshes that repository's syncs only.

Patterns are ``fnmatch`` patterns over the provider's event type (``issues.opened``,
``payment_intent.succeeded``, ``message``), matched case-sensitively; a pattern also matches the
types below it in the dotted hierarchy, so ``issues`` matches ``issues`` and ``issues.opened``
(and ``issues.*`` only the latter); ``*`` matches every event, one without a type too.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spark_integrations.connectors.streams import Stream

__all__ = [
    "MAX_PATTERN_LENGTH",
    "EventRefresh",
    "build_events",
    "event_matches",
    "template_problem",
]

#: The longest event type pattern (the store's column holds 200 characters).
MAX_PATTERN_LENGTH = 200


@dataclass(frozen=True)
class EventRefresh:
    """A stream an event refreshes, and the stream parameters (templates over the event's
    payload, as ``(name, template)`` pairs) that pick the syncs it refreshes; none: every sync
    of the stream."""

    stream: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, stream: str, params: Mapping[str, str] | None = None) -> EventRefresh:
        """The refresh of ``stream`` with ``params`` given as a mapping."""
        return cls(stream, tuple(sorted((params or {}).items())))

    def view(self) -> dict[str, object]:
        """As ``connectors list --json`` shows it."""
        return {"stream": self.stream, "params": dict(self.params)}


def event_matches(pattern: str, event_type: str | None) -> bool:
    """True when ``event_type`` matches ``pattern`` (see the module docstring)."""
    if pattern == "*":
        return True
    if event_type is None:
        return False
    return fnmatchcase(event_type, pattern) or fnmatchcase(event_type, pattern + ".*")


def template_problem(template: str) -> str | None:
    """Why ``template`` is no payload template (one phrase), or None when it is one. The same
    grammar as ``destinations.templates``, which renders it: fields only, braces doubled."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"is malformed ({str(exc).rstrip('.')}); write {{{{ and }}}} for literal braces"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            return f"has a format spec or conversion in {{{name}...}}; name fields only"
        if any(not p.strip() or p != p.strip() for p in name.split(".")):
            return f"has {{{name}}}, which is not a field name"
    return None


def build_events(
    events: Mapping[str, Any], streams: Sequence[Stream], scheme: str
) -> tuple[dict[str, tuple[EventRefresh, ...]], list[str]]:
    """A manifest's (schema-valid) ``webhooks.events``: each pattern's refreshes, and the
    problems the schema cannot see (``key.path: what is wrong``): a stream not declared, a
    param its stream does not take, a malformed template, events with no scheme to bring them.
    """
    problems: list[str] = []
    if scheme == "none":
        problems.append("webhooks.events: needs a webhooks.scheme: no event arrives without one.")
    by_name = {stream.name: stream for stream in streams}
    built: dict[str, tuple[EventRefresh, ...]] = {}
    for pattern, given in events.items():
        path = f"webhooks.events.{pattern}"
        refreshes: list[EventRefresh] = []
        for item in given if isinstance(given, list) else [given]:
            stream = by_name.get(item["stream"])
            if stream is None:
                known = ", ".join(by_name) or "none"
                problems.append(
                    f"{path}.stream: names no stream {item['stream']!r} (streams: {known})."
                )
                continue
            declared = {p.name for p in stream.parameters}
            for name, template in item.get("params", {}).items():
                if name not in declared:
                    takes = ", ".join(sorted(declared)) or "none"
                    problems.append(
                        f"{path}.params.{name}: is not a param of the stream {stream.name} "
                        f"(it takes {takes})."
                    )
                problem = template_problem(template)
                if problem:
                    problems.append(f"{path}.params.{name}: the template {problem}.")
            refreshes.append(EventRefresh.of(stream.name, item.get("params")))
        built[pattern] = tuple(refreshes)
    return built, problems
