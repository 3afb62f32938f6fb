"""Pagination cycles caught across a whole sync run, through real workers and a real sandbox.

The sandbox loops on request (``cycle_at``/``cycle_length``, see ``sandbox/cycles.py``). A
connector installed the way a plugin is (an entry point on the workers' path) reads its
``items`` in each of the five pagination styles, with and without a cycle; a hook loaded into the
workers makes every sync task hand its run on after two pages, so page 5 is read by the run's
third task and the position it repeats was recorded by the first or the second.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from spark_integrations.connectors.positions import describe_position
from spark_integrations.constants import CONNECTOR_ENTRY_POINT_GROUP
from spark_integrations.store import DeadLetter, Record, SyncRun, session_scope
from spark_integrations.store.models import SyncRunPosition
from spark_integrations.store.syncs import add_sync
from tests.integration.fleet import FleetProcess, client_app, outcome, run_cli, start_sandbox

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

KEY = "sk-cycles-test"
PROVIDER = "sandbox-loops"
PAGES_PER_TASK = 2
PAGE_SIZE = 10
CYCLE_AT = 5

# path, paginator class, its options, where the records are
STYLES: dict[str, tuple[str, str, dict[str, Any], str | None]] = {
    "cursor": ("/v1/items", "CursorPaginator", {}, "data"),
    "token": ("/v1/items/by-token", "NextTokenPaginator", {}, "items"),
    "link": ("/v1/items/by-link", "LinkHeaderPaginator", {"size_param": "limit"}, None),
    "offset": ("/v1/items/by-offset", "OffsetPaginator", {"next_field": "next_offset"}, "data"),
    "page": ("/v1/items/by-page", "PageNumberPaginator", {"next_field": "next_page"}, "data"),
}
# How a plain client walks each style: size parameter, the next position's field and parameter.
WALK = {
    "cursor": ("limit", "next_cursor", "cursor"),
    "token": ("max_results", "nextToken", "next_token"),
    "link": ("limit", "", ""),
    "offset": ("limit", "next_offset", "offset"),
    "page": ("per_page", "next_page", "page"),
}
# Stream name suffix -> the sandbox's loop parameters ("clean": a cycle past the listing's end).
CASES: dict[str, dict[str, int]] = {
    "clean": {"cycle_at": 1_000_000},
    **{f"cycle{k}": {"cycle_at": CYCLE_AT, "cycle_length": k} for k in (1, 2, 3)},
}

PLUGIN = '''
"""The sandbox's items in every pagination style, each with and without a cycle (a test plugin)."""
from spark_integrations.connectors import pagination
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.connectors.streams import Stream

STYLES = {styles!r}
CASES = {cases!r}


class LoopingSandbox(SandboxConnector):
    name = {provider!r}
    streams = tuple(
        Stream(
            f"{{style}}-{{case}}",
            path,
            primary_key="id",
            replication_key="updated_at",
            since_param="updated_since",
            paginator=getattr(pagination, paginator),
            paginator_options=options,
            records_path=records,
            page_size={page_size},
            params=params,
        )
        for style, (path, paginator, options, records) in STYLES.items()
        for case, params in CASES.items()
    )
'''

HOOK = f'''
"""Loaded into the test's workers: a sync task hands its run on after {PAGES_PER_TASK} pages."""
from spark_integrations.tasks import syncs

assert hasattr(syncs, "PAGES_PER_TASK"), "the sync task's pages-per-task setting moved"
syncs.PAGES_PER_TASK = {PAGES_PER_TASK}
'''


def install_plugin(folder: Path) -> Path:
    """The test connector and the workers' hook, as an installed package would be found."""
    folder.mkdir(parents=True, exist_ok=True)
    source = PLUGIN.format(styles=STYLES, cases=CASES, provider=PROVIDER, page_size=PAGE_SIZE)
    (folder / "looping_sandbox.py").write_text(textwrap.dedent(source))
    (folder / "cycle_hooks.py").write_text(HOOK)
    meta = folder / "looping_sandbox-1.0.dist-info"
    meta.mkdir(exist_ok=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: looping-sandbox\nVersion: 1.0\n")
    (meta / "entry_points.txt").write_text(
        f"[{CONNECTOR_ENTRY_POINT_GROUP}]\n{PROVIDER} = looping_sandbox:LoopingSandbox\n"
    )
    return folder


@pytest.fixture
def env(redis_env: dict[str, str], short_tmp: Path) -> dict[str, str]:
    plugin = install_plugin(short_tmp / "plugin")
    return {**redis_env, "PYTHONPATH": redis_env["PYTHONPATH"] + os.pathsep + str(plugin)}


def start_worker(env: dict[str, str], tmp: Path, processes: list[Any]) -> FleetProcess:
    args = ["worker", "--concurrency=2", "--", "--include=cycle_hooks", "--without-mingle"]
    proc = FleetProcess(env, [*args, "--without-gossip", "--hostname=cycles@%h"], tmp / "w.log")
    processes.append(proc)
    return proc.start().wait_ready()


def connect(env: dict[str, str], url: str, **config: Any) -> str:
    args = ["connections", "add", PROVIDER, "--name", "loops", "--secret", f"api_key={KEY}"]
    done = run_cli(env, *args, "--config", json.dumps({"base_url": url, **config}), "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def new_syncs(env: dict[str, str], connection_id: str, case: str) -> dict[str, str]:
    """One sync per style of ``case``'s streams: {style: sync id}."""
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        return {
            style: add_sync(
                session, connection_id=connection_id, stream=f"{style}-{case}", schedule=None
            ).id
            for style in STYLES
        }


def trigger_all(env: dict[str, str], syncs: dict[str, str]) -> dict[str, tuple[bool, Any, str]]:
    """Run every sync at once; {style: (succeeded, result or error, task id)}."""
    app = client_app(env)
    sent = {
        style: app.send_task(
            "integrations.sync",
            kwargs={"sync_id": sync_id, "full_refresh": False},
            queue="integrations.syncs",
        )
        for style, sync_id in syncs.items()
    }
    return {style: (*outcome(result, timeout=120), result.id) for style, result in sent.items()}


def run_of(env: dict[str, str], sync_id: str) -> tuple[SyncRun, int, int]:
    """The sync's one run, its records in the store and its positions left behind."""
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        (run,) = session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)).all()
        stored = session.scalar(select(func.count()).where(Record.sync_id == sync_id))
        left = session.scalar(select(func.count()).where(SyncRunPosition.run_id == run.id))
    return run, int(stored or 0), int(left or 0)


def shares(log: Path, task_id: str) -> int:
    """How many tasks of the run with this task id the worker received (hand-offs + 1)."""
    return len(re.findall(rf"integrations\.sync\[{task_id}\] received", log.read_text()))


def repeated_position(base_url: str, style: str, length: int) -> Any:
    """The position page 5 hands back, read with a plain HTTP client (no fleet code)."""
    size, field, name = WALK[style]
    url = base_url + STYLES[style][0]
    params: dict[str, Any] = {size: PAGE_SIZE, "cycle_at": CYCLE_AT, "cycle_length": length}
    following: Any = None
    with requests.Session() as http:
        http.headers["X-API-Key"] = KEY
        for _ in range(CYCLE_AT):
            answer = http.get(url, params=params, timeout=10)
            assert answer.status_code == 200, answer.text
            if style == "link":
                following = answer.links["next"]["url"]
                url, params = following, {}
            else:
                following = answer.json()[field]
                params[name] = following
    return following


@pytest.mark.parametrize("length", [1, 2, 3])
def test_every_paginator_ends_a_cycle_across_hand_offs(
    env: dict[str, str], short_tmp: Path, processes: list[Any], length: int
) -> None:
    """Page 5 hands back the position page 5 - length handed back: the run ends failed with
    the five pages committed, its history and a dead letter naming the stream, the position
    and the cycle; the run was read by three tasks (hand-offs after pages 2 and 4)."""
    box = start_sandbox(env, short_tmp, processes, "--records=200", f"--api-key={KEY}")
    connection_id = connect(env, box.url)
    syncs = new_syncs(env, connection_id, f"cycle{length}")
    worker = start_worker(env, short_tmp, processes)
    outcomes = trigger_all(env, syncs)
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        letters = {d.task_id: d.error for d in session.scalars(select(DeadLetter)).all()}
    for style, (succeeded, error, task_id) in outcomes.items():
        stream = f"{style}-cycle{length}"
        assert not succeeded, f"{stream}: {error}"
        run, stored, left = run_of(env, syncs[style])
        shown = describe_position(repeated_position(box.url, style, length))
        expected = (
            f"{PROVIDER}'s {stream} stream loops: page 5 of the run handed back the next-page "
            f"position {shown}, which page {5 - length} had handed back already "
            f"(a cycle of {length} page{'s' if length > 1 else ''})"
        )
        assert run.status == "failed" and (run.error or "").startswith(expected), run.error
        assert expected in str(error)
        assert (run.pages, run.records, stored, left) == (5, 50, 50, 0), stream
        assert letters[task_id] == run.error, stream
        assert shares(worker.log, task_id) == 3, f"{stream}: three tasks, two hand-offs"


def test_every_paginator_reads_to_the_end_across_hand_offs_and_retries(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """No cycle, 20 pages a run, ten tasks each, a fifth of the requests faulted: each page
    asked again after a retry or a hand-off is asked at a position its run recorded, and
    none of that is taken for a cycle. Every record arrives once."""
    box = start_sandbox(
        env,
        short_tmp,
        processes,
        "--records=200",
        f"--api-key={KEY}",
        "--fault-rate=0.2",
        "--fault-kinds=500,502,503,malformed",
    )
    # Retries generous enough that a fault streak cannot end a run (what is tested is that
    # no retry is taken for a cycle, not the retry policy).
    policy = {"retry_attempts": 50, "retry_window": 3600, "breaker_fail_max": 1000}
    connection_id = connect(env, box.url, **policy)
    syncs = new_syncs(env, connection_id, "clean")
    worker = start_worker(env, short_tmp, processes)
    outcomes = trigger_all(env, syncs)
    retried = 0
    for style, (succeeded, result, task_id) in outcomes.items():
        assert succeeded, f"{style}: {result}"
        run, stored, left = run_of(env, syncs[style])
        assert (run.status, run.pages, run.records, stored, left) == ("succeeded", 20, 200, 200, 0)
        # Ten tasks of two pages; a long retry wait hands a run on once more.
        assert shares(worker.log, task_id) >= 10, style
        retried += run.retries
    assert retried > 0 and box.stats()["faults_injected"] > 0
