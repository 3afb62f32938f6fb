"""``syncs`` and ``records`` commands on the embedded SQLite store: shapes, round trips, refusals.

Sending a run needs a broker, so ``syncs run`` is tested against a stand-in for ``send_task``
and its result: the command's own work (checks, queue choice, waiting, progress, failures).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout

from spark_integrations.constants import QUEUE_BACKFILLS, QUEUE_SYNCS, TASK_SYNC
from spark_integrations.store import SyncCursor, SyncRun, session_scope
from spark_integrations.store.records import upsert_records
from spark_integrations.store.types import utcnow
from spark_integrations.workers import commands_syncs, sync_progress
from spark_integrations.workers.cli import main
from tests.unit.conftest import dispose_engines

SYNC_KEYS = {
    "id", "connection_id", "stream", "schedule", "destination", "destination_params", "deliver",
    "params", "enabled", "next_run_at",
}  # fmt: skip
RUN_KEYS = {"run_id", "status", "records", "pages", "started_at", "finished_at", "error"}


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def home(clean_env: Path) -> Iterator[Path]:
    """The embedded HOME; the store's engines are closed after the test."""
    yield clean_env
    dispose_engines(f"sqlite:///{clean_env / 'store.db'}")


@pytest.fixture
def url(home: Path) -> str:
    return f"sqlite:///{home / 'store.db'}"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*args: str) -> Outcome:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture
def conn(home: Path, cli: Any) -> str:
    added = cli(
        "connections", "add", "sandbox", "--name", "main",
        "--config", '{"base_url": "http://127.0.0.1:9"}', "--secret", "api_key=k", "--json",
    ).json()  # fmt: skip
    return str(added["id"])


@pytest.fixture
def sync_id(conn: str, cli: Any) -> str:
    return str(cli("syncs", "add", conn, "items", "--every", "5m", "--json").json()["id"])


def assert_clean_error(result: Outcome, code: int, *words: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out
    assert result.err.startswith("spark-integrations: ") and result.err.count("\n") == 1
    for word in words:
        assert word in result.err, result.err


# --- add, list, pause, resume, reset, remove -----------------------------------------------------


def test_add_with_interval_cron_or_on_demand(conn: str, cli: Any) -> None:
    every = cli("syncs", "add", conn, "items", "--every", "5m", "--json").json()
    assert set(every) == SYNC_KEYS
    assert every["connection_id"] == conn and every["stream"] == "items"
    assert every["schedule"] == "every:300" and every["destination"] == "store"
    assert every["enabled"] is True and every["next_run_at"].endswith("Z")

    cron = cli("syncs", "add", conn, "items", "--cron", "*/15 * * * *", "--json").json()
    assert cron["schedule"] == "cron:*/15 * * * *"

    action = f"action:{conn}:create_message"
    on_demand = cli("syncs", "add", conn, "items", "--destination", action, "--json").json()
    assert on_demand["schedule"] is None and on_demand["next_run_at"] is None
    assert on_demand["destination"] == action

    text = cli("syncs", "add", conn, "items", "--every", "1h")
    assert text.code == 0 and text.out.startswith("added sync ") and "every 1h" in text.out

    listed = cli("syncs", "list", "--json").json()
    assert [s["id"] for s in listed[:3]] == [every["id"], cron["id"], on_demand["id"]]
    assert all(set(s) == SYNC_KEYS for s in listed)
    human = cli("syncs", "list").out.splitlines()
    assert len(human) == 4
    assert "every 5m -> store" in human[0] and "cron '*/15 * * * *' UTC" in human[1]
    assert "on demand" in human[2]


def test_list_without_syncs(home: Path, cli: Any) -> None:
    assert cli("syncs", "list", "--json").json() == []
    assert cli("syncs", "list").out == "no syncs.\n"


def test_pause_resume_reset_remove(sync_id: str, url: str, cli: Any) -> None:
    paused = cli("syncs", "pause", sync_id, "--json").json()
    assert set(paused) == SYNC_KEYS and paused["enabled"] is False
    assert cli("syncs", "list", "--json").json()[0]["enabled"] is False
    resumed = cli("syncs", "resume", sync_id, "--json").json()
    assert resumed["enabled"] is True and resumed["next_run_at"]
    assert cli("syncs", "pause", sync_id).out == f"paused sync {sync_id}.\n"

    with session_scope(url) as session:
        session.add(SyncCursor(sync_id=sync_id, value="2024-01-01T00:00:00Z"))
    reset = cli("syncs", "reset", sync_id, "--json").json()
    assert reset["id"] == sync_id
    with session_scope(url) as session:
        assert session.get(SyncCursor, sync_id) is None

    removed = cli("syncs", "remove", sync_id, "--json").json()
    assert removed == {"id": sync_id, "removed": True}
    assert cli("syncs", "list", "--json").json() == []


# --- status and records --------------------------------------------------------------------------


def add_runs(url: str, sync_id: str) -> tuple[str, str]:
    now = utcnow()
    with session_scope(url) as session:
        old = SyncRun(
            sync_id=sync_id, status="failed", full_refresh=False, pages=2, records=150,
            retries=1, error="the provider answered 500.", created_at=now.replace(year=2020),
            started_at=now.replace(year=2020), finished_at=now.replace(year=2020),
        )  # fmt: skip
        new = SyncRun(
            sync_id=sync_id, status="running", full_refresh=True, pages=3, records=300,
            retries=0, created_at=now, started_at=now, task_id="task-1",
        )  # fmt: skip
        session.add_all([old, new])
        session.flush()
        return old.id, new.id


def test_status_shows_runs_newest_first(sync_id: str, url: str, cli: Any) -> None:
    empty = cli("syncs", "status", sync_id, "--json").json()
    assert empty["runs"] == [] and set(empty) == SYNC_KEYS | {"runs"}
    assert cli("syncs", "status", sync_id).out.endswith("no runs yet.\n")

    old, new = add_runs(url, sync_id)
    view = cli("syncs", "status", sync_id, "--json").json()
    assert [r["run_id"] for r in view["runs"]] == [new, old]
    assert all(set(r) >= RUN_KEYS for r in view["runs"])
    assert view["runs"][0]["status"] == "running" and view["runs"][0]["finished_at"] is None
    assert view["runs"][1]["error"] == "the provider answered 500."

    lines = cli("syncs", "status", sync_id).out.splitlines()
    assert len(lines) == 3 and lines[0].startswith(sync_id)
    assert new in lines[1] and "running" in lines[1] and "300 records" in lines[1]
    assert "failed" in lines[2] and "error: the provider answered 500." in lines[2]


def test_records_list(sync_id: str, url: str, cli: Any) -> None:
    assert cli("records", "list", sync_id, "--json").json() == []
    assert cli("records", "list", sync_id).out == f"no records for sync {sync_id}.\n"
    with session_scope(url) as session:
        upsert_records(session, sync_id, [(i, {"id": i, "name": f"n{i}"}) for i in range(105)])
        upsert_records(session, sync_id, [("abc", {"id": "abc"})])

    rows = cli("records", "list", sync_id, "--json").json()
    assert len(rows) == commands_syncs.DEFAULT_RECORDS_LIMIT
    first = rows[0]
    assert set(first) == {"key", "data", "content_hash", "first_seen_at", "last_changed_at"}
    assert len(first["content_hash"]) == 64 and first["first_seen_at"].endswith("Z")
    assert {r["key"] for r in rows} <= set(range(105))  # keys decoded from their JSON text

    everything = cli("records", "list", sync_id, "--limit", "1000", "--json").json()
    assert len(everything) == 106
    stored = {json.dumps(r["key"]): r["data"] for r in everything}
    assert stored['"abc"'] == {"id": "abc"} and stored["7"] == {"id": 7, "name": "n7"}

    human = cli("records", "list", sync_id, "--limit", "2").out.splitlines()
    assert len(human) == 3 and human[-1] == "(the first 2; --limit N shows more.)"


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["syncs", "add", "no-such-connection", "items"], 1, ["no connection"]),
        (["syncs", "add", "{conn}", "nope"], 2, ["no stream 'nope'", "items"]),
        (["syncs", "add", "{conn}", "items", "--every", "5x"], 2, ["'5x' is not a duration"]),
        (["syncs", "add", "{conn}", "items", "--every", "0s"], 2, ["at least"]),
        (["syncs", "add", "{conn}", "items", "--cron", "* * *"], 2, ["cron expression"]),
        (["syncs", "add", "{conn}", "items", "--cron", "61 * * * *"], 2, ["cron expression"]),
        (
            ["syncs", "add", "{conn}", "items", "--every", "5m", "--cron", "* * * * *"],
            2,
            ["not both"],
        ),
        (["syncs", "add", "{conn}", "items", "--destination", "s3"], 2, ["unknown destination"]),
        (["syncs", "add", "{conn}", "items", "--destination", "store:x"], 2, ["no argument"]),
        (["syncs", "add", "{conn}", "items", "--destination", "action:x"], 2, ["CONNECTION_ID"]),
        (["syncs", "add", "{conn}", "items", "--destination", "action:zz:a"], 1, ["'zz'"]),
        (
            ["syncs", "add", "{conn}", "items", "--destination", "action:{conn}:nope"],
            2,
            ["no action 'nope'"],
        ),
        (["syncs", "status", "nope"], 1, ["no sync 'nope'"]),
        (["syncs", "pause", "nope"], 1, ["no sync 'nope'"]),
        (["syncs", "resume", "nope"], 1, ["no sync 'nope'"]),
        (["syncs", "reset", "nope"], 1, ["no sync 'nope'"]),
        (["syncs", "remove", "nope"], 1, ["no sync 'nope'"]),
        (["syncs", "run", "nope"], 1, ["no sync 'nope'"]),
        (["records", "list", "nope"], 1, ["no sync 'nope'"]),
        (["records", "list", "{sync}", "--limit", "0"], 2, ["--limit"]),
        (
            ["syncs", "add", "{conn}", "items", "--param", "nosuch=1"],
            2,
            ["stream items takes no param 'nosuch'; it takes none"],
        ),
        (
            ["syncs", "add", "{conn}", "items_by_tag"],
            2,
            ["needs the param 'tag'", "--param tag=VALUE"],
        ),
        (
            ["syncs", "add", "{conn}", "items_by_tag", "--param", "tag=alpha", "--param", "x=1"],
            2,
            ["takes no param 'x'; it takes tag"],
        ),
        (["syncs", "add", "{conn}", "items_by_tag", "--param", "tag"], 2, ["NAME=VALUE"]),
        (["syncs", "add", "{conn}", "items_by_tag", "--param", "=v"], 2, ["NAME=VALUE"]),
        (
            ["syncs", "add", "{conn}", "items_by_tag", "--param", "tag=a", "--param", "tag=b"],
            2,
            ["given twice"],
        ),
    ],
)
def test_bad_input_is_one_sentence(
    args: list[str], code: int, words: list[str], conn: str, sync_id: str, cli: Any
) -> None:
    argv = [a.format(conn=conn, sync=sync_id) for a in args]
    assert_clean_error(cli(*argv), code, *words)
    assert len(cli("syncs", "list", "--json").json()) == 1  # nothing added


# --- run -----------------------------------------------------------------------------------------


@dataclass
class FakeResult:
    """Stands in for AsyncResult: a few timeouts (while ``during`` runs), then ``outcome``."""

    id: str
    outcome: Any
    waits: int = 2
    during: Any = None
    calls: int = 0

    def get(self, timeout: float | None = None) -> Any:
        self.calls += 1
        if self.calls <= self.waits:
            if self.during is not None:
                self.during(self.calls)
            raise CeleryTimeout()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@dataclass
class FakeSender:
    results: list[FakeResult]
    sent: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    def send_task(self, name: str, kwargs: dict[str, Any], queue: str) -> FakeResult:
        self.sent.append((name, kwargs, queue))
        return self.results.pop(0)


@pytest.fixture
def sender(monkeypatch: pytest.MonkeyPatch) -> FakeSender:
    from spark_integrations.workers.app import app
    from spark_integrations.workers.embedded import EmbeddedRedis

    fake = FakeSender([])
    monkeypatch.setattr(EmbeddedRedis, "ensure_running", lambda self: None)
    monkeypatch.setattr(app, "send_task", fake.send_task)
    monkeypatch.setattr(sync_progress, "PROGRESS_EVERY", 0.0)
    return fake


def test_run_without_wait_queues_on_the_right_queue(
    sync_id: str, cli: Any, sender: FakeSender
) -> None:
    sender.results += [FakeResult("t-1", None), FakeResult("t-2", None)]
    assert cli("syncs", "run", sync_id, "--json").json() == {"sync_id": sync_id, "task_id": "t-1"}
    text = cli("syncs", "run", sync_id, "--full-refresh")
    assert text.code == 0 and "task t-2" in text.out
    assert sender.sent == [
        (TASK_SYNC, {"sync_id": sync_id, "full_refresh": False}, QUEUE_SYNCS),
        (TASK_SYNC, {"sync_id": sync_id, "full_refresh": True}, QUEUE_BACKFILLS),
    ]


def test_run_wait_shows_progress_then_the_result(
    sync_id: str, url: str, cli: Any, sender: FakeSender
) -> None:
    answer = {"ok": True, "sync_id": sync_id, "run_id": "r", "records": 300, "pages": 3}

    def worker_starts(call: int) -> None:
        if call == 2:
            add_runs(url, sync_id)  # the newest run carries task_id task-1

    sender.results.append(FakeResult("task-1", answer | {"cursor": "c"}, during=worker_starts))
    done = cli("syncs", "run", sync_id, "--wait", "--json")
    assert done.json() == answer | {"cursor": "c"}
    lines = done.err.splitlines()
    assert lines[0] == f"sync {sync_id}: queued, waiting for a worker"
    assert lines[1].startswith(f"sync {sync_id} run ")
    assert lines[1].endswith(": running, 3 pages, 300 records, 0 retries")

    sender.results.append(FakeResult("task-2", answer | {"cursor": 5}, waits=0))
    human = cli("syncs", "run", sync_id, "--wait")
    assert human.code == 0 and "300 records in 3 pages; cursor 5." in human.out


def test_run_wait_reports_a_skipped_run(sync_id: str, cli: Any, sender: FakeSender) -> None:
    skipped = {"ok": True, "skipped": True, "reason": "run r of sync s is in progress."}
    sender.results.append(FakeResult("t", skipped, waits=0))
    done = cli("syncs", "run", sync_id, "--wait")
    assert (
        done.code == 0
        and done.out == f"sync {sync_id} was not run: run r of sync s is in progress.\n"
    )


def test_run_wait_reports_a_failure_in_one_sentence(
    sync_id: str, cli: Any, sender: FakeSender
) -> None:
    failure = RuntimeError("the provider answered 500.\nmore detail")
    sender.results.append(FakeResult("t", failure, waits=0))
    done = cli("syncs", "run", sync_id, "--wait", "--json")
    assert_clean_error(done, 1, f"sync {sync_id} failed: the provider answered 500;", "status")
    assert done.out == ""


def test_run_wait_gives_up_after_the_timeout(sync_id: str, cli: Any, sender: FakeSender) -> None:
    sender.results.append(FakeResult("t", None, waits=10**9))
    done = cli("syncs", "run", sync_id, "--wait", "--timeout", "0.1")
    assert done.code == 1 and done.out == "" and "Traceback" not in done.err
    progress, error = done.err.splitlines()  # one progress line: nothing changed since
    assert progress == f"sync {sync_id}: queued, waiting for a worker"
    assert error.startswith(f"spark-integrations: sync {sync_id} (task t) did not finish within")


def test_run_wait_on_a_terminal_updates_one_line(
    sync_id: str, url: str, cli: Any, sender: FakeSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    answer = {"ok": True, "sync_id": sync_id, "run_id": "r", "records": 0, "pages": 0}
    sender.results.append(
        FakeResult(
            "task-1", answer, waits=3, during=lambda n: add_runs(url, sync_id) if n == 2 else None
        )
    )
    done = cli("syncs", "run", sync_id, "--wait", "--json")
    assert done.json() == answer
    assert "\n" not in done.err and done.err.count("\r") == 4  # three updates, then cleared
    assert "running, 3 pages, 300 records, 0 retries\x1b[K" in done.err
    assert done.err.endswith("\r\x1b[K")


def test_add_keeps_the_stream_params_and_shows_them(conn: str, cli: Any) -> None:
    added = cli(
        "syncs", "add", conn, "items_by_tag", "--param", "tag=alpha", "--json"
    ).json()  # fmt: skip
    assert added["params"] == {"tag": "alpha"} and added["stream"] == "items_by_tag"
    plain = cli("syncs", "add", conn, "items", "--json").json()
    assert plain["params"] == {}
    listed = {s["id"]: s for s in cli("syncs", "list", "--json").json()}
    assert listed[added["id"]]["params"] == {"tag": "alpha"}
    assert cli("syncs", "status", added["id"], "--json").json()["params"] == {"tag": "alpha"}
    assert " items_by_tag tag=alpha " in cli("syncs", "list").out
