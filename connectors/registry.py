"""Discovery of connectors through the entry-point group ``spark_integrations.connectors``.

A separately installed package adds a connector by declaring an entry point; nothing in the fleet
changes. A plugin that fails to import, or does not name a :class:`~connectors.base.Connector`
subclass, is recorded as broken (``doctor`` reports it) and does not hide the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from spark_integrations.connectors.base import Connector
from spark_integrations.constants import CONNECTOR_ENTRY_POINT_GROUP
from spark_integrations.errors import UsageError

__all__ = ["BrokenPlugin", "Registry", "discover_connectors", "get_connector"]


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point that could not be loaded as a connector, and why."""

    name: str
    value: str
    error: str


@dataclass(frozen=True)
class Registry:
    """The connectors found in this environment, and the plugins that failed to load."""

    connectors: dict[str, type[Connector]]
    broken: tuple[BrokenPlugin, ...]


@cache
def discover_connectors() -> Registry:
    """Load every connector entry point once per process."""
    found: dict[str, type[Connector]] = {}
    broken: list[BrokenPlugin] = []
    for ep in entry_points(group=CONNECTOR_ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not stop the others
            broken.append(BrokenPlugin(ep.name, ep.value, f"{type(exc).__name__}: {exc}"))
            continue
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            broken.append(BrokenPlugin(ep.name, ep.value, "does not name a Connector subclass"))
            continue
        declared = getattr(cls, "name", None)
        if declared != ep.name:
            broken.append(
                BrokenPlugin(ep.name, ep.value, f"its class is named {declared!r}, not {ep.name!r}")
            )
            continue
        found[ep.name] = cls
    return Registry(dict(sorted(found.items())), tuple(broken))


def get_connector(name: str) -> type[Connector]:
    """The connector called ``name``, or a :class:`UsageError` listing the known ones."""
    reg = discover_connectors()
    try:
        return reg.connectors[name]
    except KeyError:
        known = ", ".join(reg.connectors) or "none installed"
        raise UsageError(f"unknown provider {name!r}; known providers: {known}.") from None
