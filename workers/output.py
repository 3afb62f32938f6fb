"""What commands print: one JSON document with ``--json``, else a line for a person."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["emit"]


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``data`` as one JSON document, or ``text`` for a person."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif text is not None:
        click.echo(text)
