"""The Grafana dashboard queries only what the fleet exports, and compose finds it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from spark_integrations.metrics_families import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "docker" / "grafana"
SAMPLES = {f.sample: f for f in FAMILIES.values()}
METRIC = re.compile(r"\bspark_integrations_[a-z0-9_]+")
# Label names an expression groups, joins or matches on.
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
#: Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {"instance", "job"}


def dashboard() -> dict[str, Any]:
    return dict(json.loads((GRAFANA / "dashboard.json").read_text()))


def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for item in items:
        found.append(item)
        found.extend(panels(item.get("panels", [])))
    return found


def queries() -> list[tuple[str, str]]:
    """(expression, legend) of every panel's target and every variable's query."""
    board = dashboard()
    found = [
        (target["expr"], target.get("legendFormat", ""))
        for panel in panels(board["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found.append((variable["definition"], ""))
    assert found
    return found


@pytest.mark.parametrize(("expr", "legend"), queries())
def test_each_query_names_declared_families_and_their_labels(expr: str, legend: str) -> None:
    names = METRIC.findall(expr)
    assert names, expr
    unknown = [name for name in names if name not in SAMPLES]
    assert not unknown, f"{unknown} in {expr!r} is no family the fleet exports"
    labels = set().union(*(SAMPLES[name].labels for name in names)) | TARGET_LABELS
    used = {
        label.strip()
        for group in GROUPING.findall(expr)
        for label in group.split(",")
        if label.strip()
    }
    used |= set(MATCHER.findall(expr)) | set(LEGEND.findall(legend))
    variable = re.search(r"label_values\([^,]+,\s*(\w+)\)", expr)
    if variable:
        used.add(variable.group(1))
    assert used <= labels, f"{sorted(used - labels)} are no labels of {names} in {expr!r}"


def test_the_dashboard_shows_what_operators_watch() -> None:
    shown = {name for expr, _ in queries() for name in METRIC.findall(expr)}
    for family in (
        "calls",
        "attempts",
        "retries",
        "rate_limited",
        "deferrals",
        "budget_grants",
        "budget_rate",
        "breaker_state",
        "breaker_transitions",
        "token_refreshes",
        "sync_lag_seconds",
        "sync_records",
        "sync_pages",
        "sync_runs",
        "dead_letters",
        "webhooks",
        "webhooks_processed",
        "event_deliveries",
        "queue_depth",
        "broker_held_messages",
        "scrape_up",
    ):
        assert FAMILIES[family].sample in shown, family


def test_panels_fit_the_grid_and_use_the_dashboards_data_source() -> None:
    board = dashboard()
    every = panels(board["panels"])
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids))
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["description"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert board["uid"] and board["title"]


def test_provisioning_loads_the_dashboard_where_compose_mounts_it() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning/dashboards/spark-integrations.yaml").read_text()
    )
    (dashboards,) = provider["providers"]
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (datasource,) = source["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    target = Path(mounts["./grafana/dashboard.json"])
    assert target.parent == Path(dashboards["options"]["path"]) and target.suffix == ".json"
    assert urlsplit(datasource["url"]).hostname in compose["services"]
