"""Destination plugins: found through their entry-point group; a broken one is reported, as a
broken connector is, never silently skipped."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

from spark_integrations.constants import DESTINATION_ENTRY_POINT_GROUP
from spark_integrations.destinations import Destination, destination_for, discover_destinations
from spark_integrations.destinations.builtin import StoreDestination
from spark_integrations.errors import UsageError

base = importlib.import_module("spark_integrations.destinations.base")
GROUP = DESTINATION_ENTRY_POINT_GROUP


class Elsewhere(Destination):
    kind = "elsewhere"

    def deliver(self, session: object, batch: object) -> object:  # type: ignore[override]
        raise NotImplementedError


class Misnamed(Elsewhere):
    kind = "other"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    discover_destinations.cache_clear()
    yield
    discover_destinations.cache_clear()


def plugins(monkeypatch: pytest.MonkeyPatch, *values: tuple[str, str]) -> None:
    here = __name__
    eps = [EntryPoint(name, value.replace("HERE", here), GROUP) for name, value in values]
    monkeypatch.setattr(base, "entry_points", lambda *, group: eps if group == GROUP else [])


def test_built_in_kinds_need_no_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch)
    reg = discover_destinations()
    assert reg.destinations["store"] is StoreDestination
    assert {"store", "action"} <= set(reg.destinations) and reg.broken == ()


def test_broken_plugins_are_recorded_and_a_good_one_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(
        monkeypatch,
        ("elsewhere", "HERE:Elsewhere"),
        ("ghost", "no_such_module_for_spark_tests:Ghost"),
        ("plain", "HERE:plugins"),
        ("misnamed", "HERE:Misnamed"),
    )
    reg = discover_destinations()
    assert reg.destinations["elsewhere"] is Elsewhere
    broken = {b.name: b.error for b in reg.broken}
    assert set(broken) == {"ghost", "plain", "misnamed"}
    assert "ModuleNotFoundError" in broken["ghost"]
    assert "Destination subclass" in broken["plain"]
    assert "'other'" in broken["misnamed"]


def test_a_sync_naming_a_broken_plugin_is_told_why(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch, ("ghost", "no_such_module_for_spark_tests:Ghost"))
    with pytest.raises(UsageError, match=r"destination plugin 'ghost' .* is broken: Module"):
        destination_for("ghost:x")
    with pytest.raises(UsageError, match="unknown destination 'nowhere'"):
        destination_for("nowhere")
