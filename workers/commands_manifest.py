"""``spark-integrations connectors schema`` and ``connectors check FILE``: the manifest's JSON
Schema, and a manifest's problems (one per line) before it is installed."""

from __future__ import annotations

import json
import sys

import click

__all__ = ["connectors_check", "connectors_schema"]


@click.command("schema")
def connectors_schema() -> None:
    """Print the JSON Schema of connector manifests (draft 2020-12)."""
    from spark_integrations.connectors.manifest import manifest_schema

    click.echo(json.dumps(manifest_schema(), indent=2))


@click.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def connectors_check(file: str) -> None:
    """Check a connector manifest (YAML or TOML): its problems, one per line, or "ok: NAME"."""
    from spark_integrations.connectors.manifest import check_manifest, load_manifest

    problems = check_manifest(file)
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        sys.exit(1)
    click.echo(f"ok: {load_manifest(file).name}")
