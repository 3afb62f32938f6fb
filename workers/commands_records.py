"""``records list``: what the record store holds for a sync."""

from __future__ import annotations

import json
from typing import Any

import click

from spark_integrations.workers.output import emit

__all__ = ["DEFAULT_RECORDS_LIMIT", "records"]

#: Records ``records list`` shows unless told otherwise.
DEFAULT_RECORDS_LIMIT = 100

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.group()
def records() -> None:
    """The record store: what syncs delivered, one record per primary key."""


def _record_view(record: Any) -> dict[str, Any]:
    from spark_integrations.store.types import iso_z

    return {
        "key": json.loads(record.key),
        "data": record.data,
        "content_hash": record.content_hash,
        "first_seen_at": iso_z(record.first_seen_at),
        "last_changed_at": iso_z(record.last_changed_at),
    }


@records.command("list")
@click.argument("sync_id")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_RECORDS_LIMIT,
    show_default=True,
    help="Records to show, oldest first (also with --json).",
)
@JSON_OPTION
def records_list(sync_id: str, limit: int, as_json: bool) -> None:
    """List the records the store holds for SYNC_ID, oldest first."""
    from spark_integrations.store.records import stored_records
    from spark_integrations.store.syncs import get_sync
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        get_sync(session, sync_id)
        found = stored_records(session, sync_id, limit=limit + 1)
        rows = [_record_view(r) for r in found[:limit]]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        data = json.dumps(row["data"], sort_keys=True, default=str)
        click.echo(f"{json.dumps(row['key'])}  {row['last_changed_at']}  {data}")
    if not rows:
        click.echo(f"no records for sync {sync_id}.")
    elif len(found) > limit:
        click.echo(f"(the first {limit}; --limit N shows more.)")
