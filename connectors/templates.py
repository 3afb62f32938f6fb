"""``{config_key}`` placeholders in a connector's URLs and paths, filled from a connection's
config (Microsoft's ``{tenant}``, a workspace's subdomain, an organisation in a path)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from spark_integrations.errors import UsageError

__all__ = ["fill_placeholders"]

_URL_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_placeholders(template: str, config: Mapping[str, Any], what: str) -> str:
    """``template`` with each ``{config_key}`` replaced by the connection's config value, one
    escaped URL segment each (Microsoft's ``{tenant}``); a missing value is one
    :class:`UsageError` naming the key."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        found = config.get(key)
        if found is None or isinstance(found, bool) or not isinstance(found, str | int):
            raise UsageError(f"{what} needs config {key}, which the connection does not set.")
        text = str(found)
        if not text or text in (".", ".."):
            raise UsageError(f"config {key} must not be empty, '.' or '..'.")
        return quote(text, safe="")

    return _URL_PLACEHOLDER.sub(value, template)
