"""``spark-integrations keys rotate``: every stored secret re-encrypted under the newest key."""

from __future__ import annotations

import time

import click

from spark_integrations.store.keys import RotationProgress, rotate_secrets
from spark_integrations.workers.output import emit

__all__ = ["keys"]

ROTATE_HELP = """Re-encrypt every stored secret under the newest key.

Every encrypted column of the store is covered: connections' secrets, OAuth tokens, connect
flows' PKCE verifiers and dead letters' replay copies (what a dead-lettered task was sent).

\b
To rotate the secret key:
  1. Put a new key first in SPARK_INTEGRATIONS_SECRET_KEYS, the old ones after it
     (comma-separated, newest first). In embedded mode without that variable, the keys
     are the lines of HOME/secret.key, newest first: add the new key as its first line.
  2. Restart every worker, beat and gateway, so that new secrets are written under the new key.
  3. Run `spark-integrations keys rotate`: it works while the fleet runs, and can be
     interrupted and run again without loss.
  4. Run it once more: when that run re-encrypts 0 rows, every stored secret is under
     the new key; drop the old keys from the list (and restart again).

Make a new key with: python3 -c 'from cryptography.fernet import Fernet;
print(Fernet.generate_key().decode())'. Progress goes to stderr after each committed batch.
"""


@click.group()
def keys() -> None:
    """The secret keys that encrypt stored secrets."""


def _progress_line(progress: RotationProgress) -> None:
    names = ", ".join(progress.table.column_names)
    click.echo(f"keys rotate: {names} {progress.rows} rows", err=True)


@keys.command("rotate", help=ROTATE_HELP)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="Rows per transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def rotate(batch_size: int, as_json: bool) -> None:
    """Re-encrypt every stored secret under the newest key."""
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    key_count = len(rt.settings.secret_keys)
    started = time.monotonic()
    report = rotate_secrets(rt.session, rt.box, batch_size=batch_size, on_progress=_progress_line)
    elapsed = time.monotonic() - started
    total = report.total
    data = {
        "ok": True,
        "keys": key_count,
        **report.as_dict(),
        "seconds": round(elapsed, 3),
    }
    if key_count == 1:
        text = (
            f"only one key is configured, so there is nothing to rotate: all {total.examined} "
            "stored secrets decrypt with it (0 re-encrypted). To rotate, put a new key first "
            "in SPARK_INTEGRATIONS_SECRET_KEYS (see `keys rotate --help`)."
        )
    else:
        text = (
            f"re-encrypted {total.reencrypted} of {total.examined} stored secrets under the "
            f"newest key ({total.already_current} already were) in {elapsed:.1f} s."
        )
        if total.changed_concurrently:
            text += (
                f" {total.changed_concurrently} changed while rotating (written by another "
                "process): run `keys rotate` again to check them before dropping an old key."
            )
        else:
            text += (
                " Run it once more: when a run re-encrypts 0, the old keys can be dropped "
                "(a process still on the old key list may have written meanwhile)."
            )
    emit(data, as_json, text)
