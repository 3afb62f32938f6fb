"""Slack's Web API, declared in ``connectors/manifests/slack.yaml`` (no Python hooks: Slack's
HTTP 200 errors, tiers, bearer tokens, OAuth v2 and cursor pagination are all data)."""

from __future__ import annotations

from spark_integrations.connectors.manifest import declared

__all__ = ["Slack"]

Slack = declared(__file__, "slack.yaml")
