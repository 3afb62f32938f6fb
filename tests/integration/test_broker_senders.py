"""A message from each sender survives the worker that fetched it being killed before running it.

Each sender the fleet has sends: the client distribution, the command line, beat (a due sync),
the gateway (a webhook delivery), a destination (a sync's calls, sent from inside a task) and a
plain Celery app on the raw ``redis://`` URL, as spark sends. A worker loaded with
``tests/integration/fetch_hook.py`` kills its whole process group (SIGKILL) right after it
fetched the message, before the task starts: the message has left its list and no task has
acknowledged, started or recorded anything. With reliable fetch the message is found in the dead
worker's held hash; a fresh worker (no hook) gets it back once the dead worker's alive key
expired (``SPARK_INTEGRATIONS_RECLAIM_AFTER``, short here), runs it, and its effect is seen once.

The control: the same kill on kombu's own fetch (``SPARK_INTEGRATIONS_BROKER_FETCH=kombu``)
leaves the message nowhere in Redis, and it never comes back: the hook hits the window.
"""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from spark_integrations_client import IntegrationsClient
from standardwebhooks.webhooks import Webhook

from spark_integrations import settings
from spark_integrations.constants import REDIS_FETCH_PREFIX
from spark_integrations.store import SyncDefinition, SyncRun, WebhookEvent, session_scope
from spark_integrations.store.syncs import add_sync
from spark_integrations.store.types import utcnow
from tests.integration.fetch_hook import ENV, FIRED_KEY, mark_key
from tests.integration.fleet import (
    FleetProcess,
    SandboxProcess,
    add_connection,
    base_env,
    client_app,
    free_port,
    run_cli,
    send_call,
    start_sandbox,
    stop_embedded_redis,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RECLAIM_AFTER = 3
KEY = "sk-broker-senders"
SECRET = "whsec_" + base64.b64encode(b"broker-senders-webhook-key-32-b!").decode()
RECORDS = 3
CALL = "integrations.call"


@dataclass
class Stage:
    """One fleet environment with a sandbox and a connection to it, and its workers."""

    env: dict[str, str]
    tmp: Path
    processes: list[Any]
    box: SandboxProcess
    cid: str
    redis: redis.Redis
    workers: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def worker(self, *, hooked: bool) -> FleetProcess:
        """A worker of one pool process on every queue; ``hooked``: with the fetch hook."""
        self.workers += 1
        name = f"{'victim' if hooked else 'fresh'}{self.workers}"
        env = {**self.env, ENV: "1"} if hooked else self.env
        include = ["--include=tests.integration.fetch_hook"] if hooked else []
        args = ["worker", "--concurrency=1", "--", *include, "--without-mingle", "--without-gossip"]
        proc = FleetProcess(env, [*args, f"--hostname={name}@%h"], self.tmp / f"{name}.log")
        self.processes.append(proc)
        return proc.start().wait_ready()

    def texts(self) -> list[str]:
        return [m["text"] for m in self.box.messages()]


@pytest.fixture
def stage_of(
    request: pytest.FixtureRequest, short_tmp: Path, processes: list[Any]
) -> Iterator[Callable[[str, dict[str, str]], Stage]]:
    """Makes the stage of a mode ("redis": server mode on this machine's services, "embedded")
    with the extra variables given; the embedded Redis is stopped afterwards."""
    made: list[Stage] = []

    def make(mode: str, extra: dict[str, str]) -> Stage:
        if mode == "embedded":
            env = base_env(short_tmp / "home")
        else:
            env = dict(request.getfixturevalue("redis_env"))
        env.update(SPARK_INTEGRATIONS_RECLAIM_AFTER=str(RECLAIM_AFTER), **extra)
        box = start_sandbox(env, short_tmp, processes, f"--records={RECORDS}", f"--api-key={KEY}")
        cid = add_connection(
            env, "box", {"base_url": box.url}, f"api_key={KEY}", f"webhook_secret={SECRET}"
        )
        # Broker and coordination are the same Redis database in both modes.
        client = redis.Redis.from_url(settings.load(env).redis_url)
        made.append(Stage(env, short_tmp, processes, box, cid, client))
        return made[-1]

    yield make
    for stage in made:
        stage.redis.close()
        if "SPARK_INTEGRATIONS_BROKER_URL" not in stage.env:
            stop_embedded_redis(stage.env)


# -- the senders: each sends (arming is done before), returns the task id it knows, and keeps
# -- in stage.notes what its check needs; each check sees the effect of the message, once.


def text_of(stage: Stage) -> str:
    return str(stage.notes.setdefault("text", f"sent {uuid.uuid4().hex[:8]}"))


def send_with_client(stage: Stage) -> str:
    s = settings.load(stage.env)
    client = IntegrationsClient(s.broker_url, s.result_backend)
    pending = client.send_call(stage.cid, "create_message", {"text": text_of(stage)})
    stage.notes["client"], stage.notes["pending"] = client, pending
    return str(pending.task_id)


def check_client(stage: Stage, answer: Any) -> None:
    client = stage.notes["client"]
    try:
        result = stage.notes["pending"].result(timeout=60)
    finally:
        client.close()
    assert result.data["text"] == text_of(stage)
    check_call(stage, answer)


def send_with_cli(stage: Stage) -> str:
    params = json.dumps({"text": text_of(stage)})
    done = run_cli(stage.env, "call", stage.cid, "create_message", "--params", params, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["task_id"])


def send_plain(stage: Stage) -> str:
    app = client_app(stage.env)  # only the raw URLs: no fleet code on the sending side
    assert not app.conf.broker_url.startswith("spark")
    return str(send_call(app, stage.cid, "create_message", {"text": text_of(stage)}).id)


def check_call(stage: Stage, answer: Any) -> None:
    assert answer["ok"] is True and answer["data"]["text"] == text_of(stage)
    wait_for(lambda: broker_empty(stage), 60, "the broker to hold nothing")
    assert stage.texts().count(text_of(stage)) == 1


def send_with_beat(stage: Stage) -> None:
    """A sync due every hour, due now: beat sends it once."""
    with session_scope(stage.env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        sync = add_sync(session, connection_id=stage.cid, stream="items", schedule="every:3600")
        sync.next_run_at = utcnow()
        stage.notes["sync_id"] = sync.id
    beat = FleetProcess(stage.env, ["beat"], stage.tmp / "beat.log")
    stage.processes.append(beat)
    beat.start()


def check_sync(stage: Stage, answer: Any) -> None:
    sync_id = stage.notes["sync_id"]
    assert answer["ok"] is True and answer["sync_id"] == sync_id and not answer.get("skipped")
    assert answer["records"] == RECORDS
    with session_scope(stage.env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        runs = session.query(SyncRun).filter(SyncRun.sync_id == sync_id).all()
        assert [run.status for run in runs] == ["succeeded"]
        definition = session.get(SyncDefinition, sync_id)
        assert definition is not None and definition.last_scheduled_at is not None


def send_with_gateway(stage: Stage) -> None:
    """A signed webhook delivery, routed to the sandbox's create_message."""
    route = ["webhooks", "route", "add", stage.cid, "item.updated"]
    with_text = "text=hook {data.id}"
    done = run_cli(
        stage.env, *route, "--action", f"{stage.cid}:create_message", "--with", with_text
    )
    assert done.returncode == 0, done.stderr
    port = free_port()
    gateway = FleetProcess(stage.env, ["gateway", f"--port={port}"], stage.tmp / "gateway.log")
    stage.processes.append(gateway)
    gateway.start().wait_ready("gateway listening on")
    msg_id = "msg_" + uuid.uuid4().hex
    stage.notes["text"] = f"hook {msg_id}"
    body = json.dumps({"type": "item.updated", "data": {"id": msg_id}}).encode()
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body),
    }
    url = f"http://127.0.0.1:{port}/webhooks/sandbox/{stage.cid}"
    answer = requests.post(url, data=body, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text


def check_webhook(stage: Stage, answer: Any) -> None:
    assert answer["ok"] is True
    (run,) = answer["runs"]
    call = client_app(stage.env).AsyncResult(run["task_id"]).get(timeout=60)
    check_call(stage, call)
    with session_scope(stage.env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        event = session.get(WebhookEvent, answer["event_id"])
        assert event is not None and event.status == "processed"


def send_with_destination(stage: Stage) -> None:
    """A sync whose destination is an action: the sync task sends a call per record."""
    with session_scope(stage.env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        sync = add_sync(
            session,
            connection_id=stage.cid,
            stream="items",
            schedule=None,
            destination=f"action:{stage.cid}:create_message",
            destination_params={"text": "record {id}"},
        )
        kwargs = {"sync_id": sync.id, "full_refresh": False}
    app = client_app(stage.env)
    stage.notes["sync"] = app.send_task(
        "integrations.sync", kwargs=kwargs, queue="integrations.syncs"
    )


def check_destination(stage: Stage, answer: Any) -> None:
    assert answer["ok"] is True and answer["data"]["text"].startswith("record ")
    assert stage.notes["sync"].get(timeout=60)["records"] == RECORDS
    wait_for(lambda: broker_empty(stage), 60, "the broker to hold nothing")
    texts = stage.texts()
    assert len(texts) == RECORDS and len(set(texts)) == RECORDS, texts


@dataclass(frozen=True)
class Sender:
    """How a sender sends, which task's message the hook waits for, what its effect is."""

    send: Callable[[Stage], str | None]
    task: str  # the task whose message the worker is killed after fetching
    check: Callable[[Stage, Any], None]


SENDERS = {
    "client": Sender(send_with_client, CALL, check_client),
    "cli": Sender(send_with_cli, CALL, check_call),
    "beat": Sender(send_with_beat, "integrations.sync", check_sync),
    "gateway": Sender(send_with_gateway, "integrations.process_webhook", check_webhook),
    "destination": Sender(send_with_destination, CALL, check_destination),
    "plain": Sender(send_plain, CALL, check_call),
}
CASES = [
    pytest.param(sender, mode, marks=[pytest.mark.server] if mode == "redis" else [])
    for sender, mode in [
        ("client", "redis"),
        ("client", "embedded"),
        ("cli", "redis"),
        ("beat", "redis"),
        ("gateway", "redis"),
        ("destination", "redis"),
        ("plain", "redis"),
        ("plain", "embedded"),
    ]
]


# -- what the broker holds --------------------------------------------------------------------


def broker_messages(stage: Stage) -> dict[str, list[Any]]:
    """Every message the broker holds, by key: the fleet's queue lists, kombu's unacked hash,
    reliable fetch's held hashes."""
    found: dict[str, list[Any]] = {}
    for raw in stage.redis.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        kind = stage.redis.type(raw)
        if kind == b"list" and key.startswith("integrations."):
            found[key] = stage.redis.lrange(raw, 0, -1)
        elif kind == b"hash" and (key == "unacked" or key.startswith(REDIS_FETCH_PREFIX)):
            found[key] = stage.redis.hvals(raw)
    return found


def holders(stage: Stage, task_id: str) -> list[str]:
    """The keys of the broker holding a message of ``task_id``."""
    held = broker_messages(stage).items()
    return [key for key, values in held if any(task_id.encode() in v for v in values)]


def broker_empty(stage: Stage) -> bool:
    """No message queued on a fleet list, none held nor unacknowledged."""
    return not any(broker_messages(stage).values())


def group_alive(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies left to a reaper do not count)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def killed_at_fetch(stage: Stage, victim: FleetProcess, task: str) -> dict[str, Any]:
    """Wait for the hook to kill ``victim``'s group; what it fetched."""
    proc = victim.proc
    assert proc is not None
    wait_for(lambda: proc.poll() is not None, 120, f"the worker to fetch {task} and die")
    assert proc.returncode == -signal.SIGKILL, victim.output()[-3000:]
    wait_for(lambda: not group_alive(victim.pid), 30, "the killed worker's pool to be gone")
    assert not stage.redis.exists(mark_key(task)), "the hook did not fire"
    fired = [json.loads(raw) for raw in stage.redis.lrange(FIRED_KEY, 0, -1)]
    assert [(f["task"], f["pid"]) for f in fired] == [(task, victim.pid)]
    return dict(fired[0])


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize(("sender", "mode"), CASES)
def test_a_message_fetched_by_a_worker_killed_at_once_comes_back(
    stage_of: Callable[[str, dict[str, str]], Stage], sender: str, mode: str
) -> None:
    how = SENDERS[sender]
    stage = stage_of(mode, {})
    victim = stage.worker(hooked=True)
    stage.redis.set(mark_key(how.task), "1")
    sent = how.send(stage)
    fired = killed_at_fetch(stage, victim, how.task)
    if sent is not None:
        assert fired["id"] == sent
    # Off its list, and recorded as the dead worker's: nowhere else.
    (held,) = holders(stage, fired["id"])
    assert held.startswith(f"{REDIS_FETCH_PREFIX}held:"), held

    stage.worker(hooked=False)
    answer = client_app(stage.env).AsyncResult(fired["id"]).get(timeout=120)
    how.check(stage, answer)


@pytest.mark.server
def test_on_kombus_own_fetch_the_same_kill_loses_the_message(
    stage_of: Callable[[str, dict[str, str]], Stage],
) -> None:
    """The control: kombu's BRPOP took the message, the worker died before recording it."""
    stage = stage_of("redis", {"SPARK_INTEGRATIONS_BROKER_FETCH": "kombu"})
    victim = stage.worker(hooked=True)
    stage.redis.set(mark_key(CALL), "1")
    app = client_app(stage.env)
    lost = send_call(app, stage.cid, "create_message", {"text": "lost"})
    fired = killed_at_fetch(stage, victim, CALL)
    assert fired["id"] == lost.id
    assert holders(stage, lost.id) == [], "the message is still somewhere in the broker"

    stage.worker(hooked=False)
    later = send_call(app, stage.cid, "create_message", {"text": "later"}).get(timeout=120)
    assert later["ok"] is True
    # Nothing can bring it back; wait as long as reliable fetch needs three times over, and a
    # scan of kombu's unacked hash, to see that nothing does.
    deadline = time.monotonic() + 3 * RECLAIM_AFTER + 10
    while time.monotonic() < deadline:
        assert lost.state == "PENDING" and "lost" not in stage.texts()
        time.sleep(1)
    assert stage.texts() == ["later"]
