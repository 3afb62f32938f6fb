"""``keys rotate`` on PostgreSQL, killed midway and run again: no secret is ever lost.

The rotation is stopped deterministically: the test plays a concurrent writer (a token refresh
under the new key list) that holds one row's lock in the middle of the table, waits until the
command has committed some batches and is blocked on that row, and then SIGKILLs it.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import psycopg
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from spark_integrations.store import Connection, SecretBox
from spark_integrations.store.engine import engine_for
from spark_integrations.store.models import new_id
from tests.integration.fleet import CLI, run_cli, wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROWS = 3000
BATCH = 50
LOCKED_AT = 1525  # in primary-key order: inside the 31st batch, whose first 25 rows it blocks


def fill(url: str, box: SecretBox) -> dict[str, str]:
    """ROWS connections with secrets under ``box``; returns {id: plaintext}."""
    plain = {new_id(): json.dumps({"api_key": f"k-{uuid.uuid4().hex}"}) for _ in range(ROWS)}
    rows = [
        {
            "id": row_id,
            "provider": "sandbox",
            "name": f"rotate-{n:05}",
            "config": {},
            "credentials": box.encrypt(value),
            "status": "active",
        }
        for n, (row_id, value) in enumerate(plain.items())
    ]
    with engine_for(url).begin() as conn:
        conn.execute(insert(Connection), rows)
    return plain


def stored(url: str) -> dict[str, bytes]:
    with engine_for(url).connect() as conn:
        query = select(Connection.id, Connection.credentials).order_by(Connection.id)
        return {row_id: bytes(token) for row_id, token in conn.execute(query)}


def test_rotation_killed_midway_then_run_again_loses_nothing(redis_env: dict[str, str]) -> None:
    url = redis_env["SPARK_INTEGRATIONS_DATABASE_URL"]
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    plain = fill(url, SecretBox([key_a]))
    env = {**redis_env, "SPARK_INTEGRATIONS_SECRET_KEYS": f"{key_b},{key_a}"}
    both, newest_only = SecretBox([key_b, key_a]), SecretBox([key_b])
    in_order = list(stored(url))  # ids in the store's primary-key order
    victim = in_order[LOCKED_AT]
    refreshed = json.dumps({"api_key": "refreshed-while-rotating"})

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    writer = psycopg.connect(dsn)  # a transaction of its own, held open across the kill
    writer.execute(
        "UPDATE connections SET credentials = %s WHERE id = %s", (both.encrypt(refreshed), victim)
    )
    proc = subprocess.Popen(
        [CLI, "keys", "rotate", "--batch-size", str(BATCH)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        progress: list[str] = []
        while len(progress) < 2:
            line = proc.stderr.readline() if proc.stderr else ""
            assert line, f"keys rotate ended before two batches: {progress}"
            progress.append(line)
        assert progress[0].startswith("keys rotate: connections.credentials ")

        def rotator_waits_on_the_lock() -> bool:
            with psycopg.connect(dsn, autocommit=True) as probe:
                found = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone()
            return bool(found and found[0])

        wait_for(rotator_waits_on_the_lock, 60, "keys rotate to reach the locked row")
        assert proc.poll() is None
        proc.kill()
        proc.wait(timeout=10)
        writer.commit()  # the concurrent writer's value lands after the kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        writer.close()

    midway = stored(url)
    assert midway.keys() == plain.keys()
    for row_id, token in midway.items():
        assert both.decrypt(token) == (refreshed if row_id == victim else plain[row_id])
    current = {row_id for row_id, token in midway.items() if newest_only.is_current(token)}
    # Every batch before the locked one committed; the locked batch's updates were rolled back.
    assert current == {*in_order[: LOCKED_AT - LOCKED_AT % BATCH], victim}

    done = run_cli(env, "keys", "rotate", "--batch-size", str(BATCH), "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["examined"] == ROWS
    assert report["already_current"] == len(current)
    assert report["reencrypted"] == ROWS - len(current)
    assert report["changed_concurrently"] == 0
    rate = report["reencrypted"] / max(report["seconds"], 1e-6)
    print(f"keys rotate: {report['reencrypted']} rows in {report['seconds']} s ({rate:.0f}/s)")

    final = stored(url)
    for row_id, token in final.items():
        assert newest_only.decrypt(token) == (refreshed if row_id == victim else plain[row_id])
    again = run_cli(env, "keys", "rotate", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["reencrypted"] == 0


def test_single_key_reports_nothing_to_rotate(redis_env: dict[str, str]) -> None:
    url = redis_env["SPARK_INTEGRATIONS_DATABASE_URL"]
    key = redis_env["SPARK_INTEGRATIONS_SECRET_KEYS"]
    with engine_for(url).begin() as conn:
        conn.execute(
            insert(Connection),
            [
                {
                    "id": new_id(),
                    "provider": "sandbox",
                    "name": f"one-{n}",
                    "config": {},
                    "credentials": SecretBox([key]).encrypt(f"s{n}"),
                    "status": "active",
                }
                for n in range(5)
            ],
        )
    done = run_cli(redis_env, "keys", "rotate")
    assert done.returncode == 0, done.stderr
    assert "only one key is configured" in done.stdout
    assert "all 5 stored secrets decrypt with it (0 re-encrypted)" in done.stdout
