"""``spark-integrations demo``: the main job on the embedded default, end to end, then a summary.

The demo starts the sandbox (faults, a rate limit, short-lived OAuth tokens, records changing
over time), the gateway, a worker and beat, each in its own process group with its log in
``HOME/demo/``. Then it does what a user would, printing each command: adds a sandbox
connection, authorises it through the OAuth connect flow (the sandbox approves at once), and
defines two syncs of the ``items`` stream in the store, one into the record store and one whose
new or changed records each become a ``create_message`` call. It runs both at once (beat sends
the later runs) and shows progress until every record is stored and every call has created its
message. The summary is read from the store, the coordination Redis and the sandbox's counters.

Whatever happens (success, failure, Ctrl-C, SIGTERM) it stops what it started: its children,
and the embedded Redis if it started it. Its syncs are paused at the end, since their sandbox is
gone; their runs and records stay in the store for ``syncs status`` and ``records list``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import click

from spark_integrations.constants import TASK_CALL
from spark_integrations.errors import ServiceError, UsageError, WaitTimeoutError
from spark_integrations.workers.output import emit
from spark_integrations.workers.processes import Child, cli_command, free_port, stop_all

__all__ = ["demo"]

#: Requests per second the sandbox allows per token, and the connection's rate budget.
RATE_LIMIT = 100
#: Share of the sandbox's API requests that meet an injected fault.
FAULT_RATE = 0.1
#: Records the sandbox changes per second: later runs of the syncs pick them up.
CHURN = 5
#: Seconds an access token lives: short, so tokens are refreshed during the demo.
TOKEN_TTL = 30
#: Both syncs' schedule, kept in the store and followed by beat.
EVERY = "15s"
#: Pool processes of the worker. Calls mostly wait on the network (a slow answer holds a
#: process for 2 s), so more processes than cores keep the rate budget used.
WORKER_CONCURRENCY = 8
#: Seconds between progress lines, and between looks at the store and the sandbox.
PROGRESS_EVERY = 2.0
POLL = 0.5
#: Seconds a child may take to come up; all of them to stop before SIGKILL; runs and calls in
#: progress to end once the syncs are paused.
START_TIMEOUT = {"sandbox": 30.0, "gateway": 30.0, "worker": 90.0, "beat": 30.0}
QUIET_TIMEOUT = 30.0


@dataclass(frozen=True)
class Tally:
    """The runs of one sync, added up."""

    pages: int
    records: int
    retries: int
    deferred: int
    runs: int
    succeeded: bool
    active: bool

    @classmethod
    def of(cls, runs: Sequence[Any]) -> Tally:
        return cls(
            pages=sum(r.pages for r in runs),
            records=sum(r.records for r in runs),
            retries=sum(r.retries for r in runs),
            deferred=sum(r.deferred for r in runs),
            runs=len(runs),
            succeeded=any(r.status == "succeeded" for r in runs),
            active=any(r.status in ("queued", "running") for r in runs),
        )


@dataclass(frozen=True)
class Snapshot:
    """One look at the store, the coordination Redis and the sandbox."""

    stored: int
    store: Tally
    action: Tally
    stats: dict[str, int]
    dead_letters: int
    call_deferrals: int

    @property
    def messages(self) -> int:
        return self.stats.get("messages_created", 0)

    @property
    def in_flight(self) -> int:
        """Calls the action sync sent that have neither created a message nor given up."""
        return max(0, self.action.records - self.messages - self.dead_letters)


class Demo:
    """One run of the demo: what it started, and its steps."""

    def __init__(self, records: int, as_json: bool) -> None:
        from spark_integrations.workers.runtime import prepare

        self.records = records
        self.rt = prepare(redis=False)  # the settings, HOME, the store at the newest migration
        if not self.rt.settings.embedded:
            raise UsageError(
                "the demo runs on the embedded default; unset SPARK_INTEGRATIONS_BROKER_URL and "
                "SPARK_INTEGRATIONS_DATABASE_URL (a server-mode store is no place for it)."
            )
        home = self.rt.settings.home
        self.logs = home / "demo"
        self.logs.mkdir(exist_ok=True)
        self.public_url = f"http://127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "SPARK_INTEGRATIONS_HOME": str(home),
            "SPARK_INTEGRATIONS_PUBLIC_URL": self.public_url,  # the OAuth redirect URI's base
            "PYTHONUNBUFFERED": "1",
        }
        self.children: list[Child] = []
        self.redis_started = False
        self.sync_ids: dict[str, str] = {}
        self.started_at = self.began = time.monotonic()
        self.work_s = 0.0
        self.deferrals_before = 0
        self.sandbox_url = ""
        self.stream = sys.stderr if as_json else sys.stdout

    def say(self, text: str) -> None:
        click.echo(text, file=self.stream)

    # -- the processes ----------------------------------------------------------------------

    def start(self) -> None:
        self.redis_started = self.rt.embedded_redis.ensure_running()
        self.deferrals_before = self.call_deferrals()
        self.say(
            f"{'started' if self.redis_started else 'using'} the embedded Redis "
            f"({self.rt.embedded_redis.socket}); logs in {self.logs}"
        )
        client_secret = secrets.token_urlsafe(16)
        sandbox = [
            "sandbox", "--port=0", f"--records={self.records}", f"--rate-limit={RATE_LIMIT}",
            f"--fault-rate={FAULT_RATE}", f"--churn={CHURN}", f"--token-ttl={TOKEN_TTL}",
            f"--client-secret={client_secret}",
        ]  # fmt: skip
        gateway = ["gateway", f"--port={self.public_url.rsplit(':', 1)[1]}"]
        worker = ["worker", f"--concurrency={WORKER_CONCURRENCY}", "--", "--without-mingle"]
        self.children = [
            Child("sandbox", sandbox, r"listening on (http://\S+)", self.logs / "sandbox.log"),
            Child("gateway", gateway, "gateway listening on", self.logs / "gateway.log"),
            Child("worker", [*worker, "--without-gossip"], r"ready\.", self.logs / "worker.log"),
            Child("beat", ["beat"], "beat: Starting", self.logs / "beat.log"),
        ]
        for child in self.children:
            child.start(self.env)
        self.sandbox_url = self.children[0].wait_ready(START_TIMEOUT["sandbox"]).group(1)
        for child in self.children[1:]:
            child.wait_ready(START_TIMEOUT[child.name])
        self.say(
            f"sandbox {self.sandbox_url}: {self.records:,} items, {FAULT_RATE:.0%} faults, "
            f"{RATE_LIMIT} requests/s, tokens living {TOKEN_TTL} s, {CHURN} changes/s\n"
            f"gateway {self.public_url}; worker ({WORKER_CONCURRENCY} processes) and beat running"
        )
        self.client_secret = client_secret

    def stop(self) -> None:
        """Pause the syncs, stop the children, then the embedded Redis if the demo started it."""
        if self.sync_ids:
            with contextlib.suppress(Exception):  # best effort: the store may be what failed
                self.pause()
        stop_all(self.children[2:])  # beat and the worker first: the calls they run end well
        stop_all(self.children[:2])
        names = [c.name for c in self.children if c.proc is not None]
        if self.redis_started:
            self.rt.embedded_redis.stop()
            names.append("the embedded Redis")
        if names:
            self.say(f"stopped {', '.join(names)}.")

    def pause(self) -> None:
        from spark_integrations.store.syncs import set_enabled

        with self.rt.session() as session:
            for sync_id in self.sync_ids.values():
                set_enabled(session, sync_id, False)

    # -- the steps a user would type --------------------------------------------------------

    def command(self, *args: str, stdin: str | None = None) -> str:
        """Run ``spark-integrations ARGS`` as a user would, printing it; its stdout."""
        self.say("$ spark-integrations " + shlex.join(args))
        done = subprocess.run(
            [*cli_command(), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            reason = lines[-1].removeprefix("spark-integrations: ").rstrip(".")
            raise ServiceError(f"`spark-integrations {' '.join(args[:2])}` failed: {reason}.")
        return done.stdout

    def connect(self) -> str:
        """Add the connection and walk the OAuth connect flow; the connection's id."""
        import requests

        from spark_integrations.store.connections import get_connection, list_connections

        with self.rt.session() as session:
            taken = {c.name for c in list_connections(session)}
        name = "demo" if "demo" not in taken else f"demo-{secrets.token_hex(3)}"
        config = {"base_url": self.sandbox_url, "client_id": "sandbox", "rate_limit": RATE_LIMIT}
        added = json.loads(self.command(
            "connections", "add", "sandbox", "--name", name, "--config", json.dumps(config),
            "--secret", "client_secret", "--json", stdin=self.client_secret + "\n",
        ))  # fmt: skip
        cid = str(added["id"])
        self.say(f"  connection {name} ({cid}): status {added['status']}")
        link = json.loads(self.command("connect", cid, "--url-only", "--json"))["url"]
        try:
            walked = requests.get(link, allow_redirects=True, timeout=30)
        except requests.RequestException as exc:
            raise ServiceError(f"following the connect link failed ({exc}).") from None
        with self.rt.session() as session:
            status = get_connection(session, cid).status
        if status != "active":
            raise ServiceError(
                f"the connect flow left connection {cid} {status} (the gateway answered "
                f"{walked.status_code}); see {self.logs / 'gateway.log'}."
            )
        hops = " -> ".join(str(r.status_code) for r in [*walked.history, walked])
        self.say(f"  followed the link: gateway, the sandbox's consent, callback ({hops}); active")
        return cid

    def schedule(self, cid: str) -> None:
        """Define both syncs in the store, show the schedule, and run them now."""
        action = [f"--destination=action:{cid}:create_message"]
        for kind, extra in (("store", []), ("action", action)):
            added = self.command("syncs", "add", cid, "items", f"--every={EVERY}", *extra, "--json")
            self.sync_ids[kind] = str(json.loads(added)["id"])
        for line in self.command("syncs", "list").splitlines():
            if any(sync_id in line for sync_id in self.sync_ids.values()):
                self.say("  " + line)
        self.say(f"  (the schedule lives in the store; beat sends the runs due every {EVERY})")
        self.began = time.monotonic()
        for sync_id in self.sync_ids.values():
            self.say("  " + self.command("syncs", "run", sync_id).strip())

    # -- following the work -----------------------------------------------------------------

    def call_deferrals(self) -> int:
        # A fleet-wide counter: the demo reads its growth.
        from spark_integrations.constants import REDIS_BUDGET_DEFERRALS

        with self.rt.embedded_redis.client() as client:
            return int(client.get(REDIS_BUDGET_DEFERRALS) or 0)

    def snapshot(self, cid: str) -> Snapshot:
        import requests
        from sqlalchemy import func, select

        from spark_integrations.store import DeadLetter, Record, SyncRun

        for child in self.children:
            child.check()
        store_id, action_id = self.sync_ids["store"], self.sync_ids["action"]
        with self.rt.session() as session:
            stored = session.scalar(select(func.count()).where(Record.sync_id == store_id))
            calls = (DeadLetter.connection_id == cid) & (DeadLetter.task == TASK_CALL)
            dead = session.scalar(select(func.count()).where(calls))
            in_demo = SyncRun.sync_id.in_(self.sync_ids.values())
            runs = session.scalars(select(SyncRun).where(in_demo)).all()
            store = Tally.of([r for r in runs if r.sync_id == store_id])
            action = Tally.of([r for r in runs if r.sync_id == action_id])
        try:
            stats = requests.get(f"{self.sandbox_url}/_sandbox/stats", timeout=10).json()
        except (requests.RequestException, ValueError) as exc:
            raise ServiceError(f"the sandbox did not answer ({exc}); see {self.logs}.") from None
        deferrals = self.call_deferrals() - self.deferrals_before
        return Snapshot(stored or 0, store, action, stats, dead or 0, deferrals)

    def progress(self, snap: Snapshot, tty: bool) -> None:
        text = (
            f"{time.monotonic() - self.began:4.0f} s  records {snap.stored:,}/{self.records:,} "
            f"({snap.store.pages} pages) | calls sent {snap.action.records:,}, messages "
            f"{snap.messages:,}, in flight {snap.in_flight:,} | faults "
            f"{snap.stats.get('faults_injected', 0):,} | 429s {snap.stats.get('rate_limited', 0)}"
        )
        click.echo(f"\r{text}\x1b[K" if tty else text, file=self.stream, nl=not tty)

    def done(self, snap: Snapshot) -> bool:
        """Every record stored, and every call sent for every record answered."""
        store, action = snap.store, snap.action
        stored, sent = snap.stored >= self.records, action.records >= self.records
        return stored and store.succeeded and sent and action.succeeded and not snap.in_flight

    def follow(self, cid: str, timeout: float) -> Snapshot:
        """Show progress until the work is done, then let what is in progress end."""
        tty = self.stream.isatty()
        shown = 0.0
        try:
            while not self.done(snap := self.snapshot(cid)):
                if time.monotonic() - shown >= PROGRESS_EVERY:
                    self.progress(snap, tty)
                    shown = time.monotonic()
                if time.monotonic() - self.began > timeout:
                    raise WaitTimeoutError(
                        f"the work did not finish within {timeout:g} s ({snap.stored:,} records "
                        f"stored, {snap.messages:,} messages); see the logs in {self.logs}."
                    )
                time.sleep(POLL)
            self.progress(snap, tty)
        finally:
            if tty:
                click.echo("", file=self.stream)
        self.work_s = time.monotonic() - self.began
        self.pause()  # later runs would only pick up the sandbox's churn
        quiet = time.monotonic() + QUIET_TIMEOUT
        while (snap.store.active or snap.action.active or snap.in_flight) and (
            time.monotonic() < quiet
        ):
            time.sleep(POLL)
            snap = self.snapshot(cid)
        return snap

    def summary(self, cid: str, snap: Snapshot) -> dict[str, Any]:
        stats, store, action = snap.stats, snap.store, snap.action
        pages, deferred_pages = store.pages + action.pages, store.deferred + action.deferred
        return {
            "ok": True,
            "records": snap.stored,
            "pages": pages,
            "runs": store.runs + action.runs,
            # Requests beyond one per page and one per call: every kind of retry.
            "retries": max(0, stats.get("requests", 0) - pages - action.records),
            "page_retries": store.retries + action.retries,
            "faults_injected": stats.get("faults_injected", 0),
            "deferred": snap.call_deferrals + deferred_pages,
            "deferred_calls": snap.call_deferrals,
            "deferred_pages": deferred_pages,
            "rate_limited": stats.get("rate_limited", 0),
            "token_refreshes": stats.get("token_refreshes", 0),
            "calls_sent": action.records,
            "messages_created": snap.messages,
            "dead_letters": snap.dead_letters,
            "work_s": round(self.work_s, 1),
            "duration_s": round(time.monotonic() - self.started_at, 1),
            "connection_id": cid,
            "syncs": dict(self.sync_ids),
            "home": str(self.rt.settings.home),
        }

    def report(self, s: dict[str, Any]) -> None:
        self.say(f"""
  records         {s["records"]:,} in the record store
  pages           {s["pages"]:,}, read by {s["runs"]} runs of the two syncs
  retries         {s["retries"]:,} requests sent again ({s["page_retries"]} for pages) \
after {s["faults_injected"]:,} injected faults
  deferred        {s["deferred"]:,} waits for the rate budget instead of a 429 \
({s["deferred_calls"]:,} by calls, {s["deferred_pages"]:,} by pages)
  429s            {s["rate_limited"]:,} answered by the sandbox
  token refreshes {s["token_refreshes"]:,} (access tokens live {TOKEN_TTL} s)
  messages        {s["messages_created"]:,} created by {s["calls_sent"]:,} calls (one per record, \
plus the changes picked up); {s["dead_letters"]} dead letters
  duration        {s["work_s"]:.0f} s of syncs and calls, {s["duration_s"]:.0f} s in all

the demo's syncs are paused; `spark-integrations syncs status {s["syncs"]["store"]}` and \
`spark-integrations records list {s["syncs"]["store"]}` show what they did.""")


@click.command()
@click.option(
    "--records",
    type=click.IntRange(100, 1_000_000),
    default=10_000,
    show_default=True,
    help="Items in the sandbox, every one synced and sent.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=10),
    default=480.0,
    show_default=True,
    help="Seconds the syncs and calls may take before the demo gives up.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON document.")
def demo(records: int, timeout: float, as_json: bool) -> None:
    """The main job on the embedded default, end to end, then a summary.

    Starts the sandbox, the gateway, a worker and beat; connects through the OAuth flow; syncs
    every record into the store and turns each into a call creating a message, with faults, a
    rate limit and expiring tokens; shows progress; stops everything it started.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM and SIGHUP end the demo as Ctrl-C does

    run = Demo(records, as_json)
    ending = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = [signal.signal(number, interrupt) for number in ending]
    try:
        run.start()
        cid = run.connect()
        run.schedule(cid)
        summary = run.summary(cid, run.follow(cid, timeout))
        if not as_json:
            run.report(summary)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; stopping what the demo started.", err=True)
        raise
    finally:
        for number in ending:
            signal.signal(number, signal.SIG_IGN)  # let the cleanup finish
        try:
            run.stop()
        finally:
            for number, handler in zip(ending, previous, strict=True):
                signal.signal(number, handler)
    if as_json:
        emit(summary, True)
