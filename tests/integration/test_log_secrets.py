"""JSON logs of a whole fleet run hold no secret and let one call or run be followed.

Server mode on this machine's Redis and PostgreSQL with ``SPARK_INTEGRATIONS_LOG_FORMAT=json``:
two workers, beat and a gateway, each writing its log lines to a file of its own (standard error;
standard output apart). Every task kind runs once: a call with an API key and one with OAuth, a
sync, the proactive token refresh, the processing of a webhook the sandbox sends through the
gateway, the delivery of an event to a subscriber, and a call that is retried until it ends in
the dead letters. Then every log line must be one JSON object, the lines of the call, the sync
and the retried call must carry their fields, and no secret of the run (API keys, the client
secret, every access and refresh token the store held, the webhook secret, the subscriber's
signing secret, the Fernet key, Flower's password) may be in any log or any Redis key or value.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import secrets
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from spark_integrations.store import WebhookEvent, session_scope
from tests.integration.fleet import (
    CLI,
    FleetProcess,
    add_connection,
    client_app,
    dead_letters,
    free_port,
    outcome,
    run_cli,
    send_call,
    start_sandbox,
    wait_for,
)
from tests.integration.oauth_helpers import CLIENT, connect_directly, stored_token
from tests.integration.test_oauth_refresh import set_token_times
from tests.integration.test_secrets import redis_dump

pytestmark = pytest.mark.server

# What Celery itself prints on standard output when it is stopped (not a log line).
_CELERY_NOTICE = re.compile(r"^(worker: (Warm|Cold) shutdown \(MainProcess\)|)$")


@dataclass
class SplitProcess(FleetProcess):
    """A fleet process whose standard error (its log lines) and output go to separate files."""

    def start(self) -> SplitProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as err, open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                [CLI, *self.args],
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def out(self) -> Path:
        return self.log.with_suffix(".out")


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """A subscriber's endpoint on loopback that takes every POST (204)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def parsed(proc: SplitProcess) -> list[dict[str, Any]]:
    """Every line the process logged, each checked to be one JSON object of the format."""
    lines = []
    for text in proc.log.read_text().splitlines():
        line = json.loads(text)
        assert isinstance(line, dict), text
        assert {"ts", "level", "logger", "message"} <= set(line), text
        lines.append(line)
    assert lines, f"{proc.args[0]} logged nothing"
    for text in proc.out.read_text().splitlines():
        assert _CELERY_NOTICE.match(text), f"{proc.args[0]} printed {text!r}"
    return lines


def task_lines(lines: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    return [ln for ln in lines if ln.get("task_id") == task_id]


def executed(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lines logged while a task ran (not the worker's own "received")."""
    return [ln for ln in lines if ln["logger"] != "celery.worker.strategy"]


def test_a_json_logged_run_of_every_task_kind_holds_no_secret_and_can_be_followed(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any], receiver: str
) -> None:
    flower_password = "flower-" + uuid.uuid4().hex
    env = {
        **redis_env,
        "SPARK_INTEGRATIONS_LOG_FORMAT": "json",
        "SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH": f"ops:{flower_password}",
    }
    api_key = "sk-live-" + uuid.uuid4().hex
    flaky_key = "sk-flaky-" + uuid.uuid4().hex
    client_secret = "cs-" + uuid.uuid4().hex
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    fernet = env["SPARK_INTEGRATIONS_SECRET_KEYS"]
    found_secrets = {api_key, flaky_key, client_secret, webhook_secret, fernet, flower_password}
    cli_output: list[str] = []

    def cli(*args: str, shows_secret: bool = False) -> str:
        done = run_cli(env, *args)
        # `subscribers add` prints the secret it made, once, on purpose: its stdout is no log.
        cli_output.extend((done.stderr,) if shows_secret else (done.stdout, done.stderr))
        assert done.returncode == 0, done.stderr
        return done.stdout

    sandbox_port, gateway_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{sandbox_port}"
    keyed = add_connection(
        env,
        "keyed",
        {"base_url": base_url, "rate_limit": 500},
        f"api_key={api_key}",
        f"webhook_secret={webhook_secret}",
    )
    hook = f"http://127.0.0.1:{gateway_port}/webhooks/sandbox/{keyed}"
    box = start_sandbox(
        env,
        short_tmp,
        processes,
        f"--api-key={api_key}",
        f"--client-secret={client_secret}",
        f"--webhook-url={hook}",
        f"--webhook-secret={webhook_secret}",
        "--records=250",
        port=sandbox_port,
    )
    flaky_box = start_sandbox(
        env, short_tmp, processes, f"--api-key={flaky_key}", "--fault-rate=1", "--fault-kinds=503"
    )
    oauth = add_connection(
        env,
        "oauth",
        {"base_url": box.url, **CLIENT, "rate_limit": 500},
        f"client_secret={client_secret}",
    )
    connect_directly(env, oauth, box.url, client_secret=client_secret)
    first = stored_token(env, oauth)
    assert first is not None and first.refresh_token
    found_secrets |= {first.access_token, first.refresh_token}
    flaky = add_connection(
        env,
        "flaky",
        {"base_url": flaky_box.url, "retry_attempts": 3, "rate_limit": 500},
        f"api_key={flaky_key}",
    )

    fleet: list[SplitProcess] = []

    def start(name: str, *args: str, marker: str) -> SplitProcess:
        proc = SplitProcess(env, list(args), short_tmp / f"{name}.log")
        processes.append(proc)
        fleet.append(proc)
        proc.start().wait_ready(marker)
        return proc

    start("gateway", "gateway", f"--port={gateway_port}", marker="listening on")
    for i in range(2):
        start(
            f"worker{i}",
            "worker",
            "--concurrency=2",
            "--",
            "--without-mingle",
            "--without-gossip",
            f"--hostname=w{i}@%h",
            marker="ready.",
        )
    start("beat", "beat", marker="beat: Starting")
    app = client_app(env)

    # A call with the API key (it also makes the sandbox send a webhook) and one with OAuth.
    keyed_call = send_call(app, keyed, "create_message", {"text": "hello"}, key="k-1")
    oauth_call = send_call(app, oauth, "create_message", {"text": "hi"})
    for result in (keyed_call, oauth_call):
        ok, value = outcome(result, timeout=120)
        assert ok, value

    # A sync of the items stream, three pages.
    sync_id = json.loads(cli("syncs", "add", keyed, "items", "--json"))["id"]
    synced = app.send_task(
        "integrations.sync", kwargs={"sync_id": sync_id}, queue="integrations.syncs"
    )
    ok, run = outcome(synced, timeout=180)
    assert ok and run["records"] == 250, run

    # The proactive refresh, with the OAuth token in its last 10% as the fleet sees it.
    set_token_times(env, oauth, obtained_ago=19, expires_in=1)
    job = app.send_task("integrations.refresh_tokens", queue="integrations.maintenance")
    ok, refreshed = outcome(job, timeout=60)
    assert ok and refreshed["failed"] == 0, refreshed
    wait_for(
        lambda: stored_token(env, oauth).version > first.version,  # type: ignore[union-attr]
        60,
        "the OAuth token to be refreshed",
    )

    # An event delivered to a subscriber (integrations.deliver_event).
    added = json.loads(
        cli(
            "subscribers",
            "add",
            receiver,
            "--events",
            "sync.succeeded",
            "--json",
            shows_secret=True,
        )
    )
    found_secrets.add(added["secret"])
    delivered = json.loads(cli("subscribers", "test", added["id"], "--wait", "--json"))
    assert delivered["status"] == "delivered", delivered

    # The webhook the keyed call made the sandbox send, through the gateway: stored, then
    # processed by integrations.process_webhook where that task exists.
    database = env["SPARK_INTEGRATIONS_DATABASE_URL"]
    processing = importlib.util.find_spec("spark_integrations.tasks.webhooks") is not None

    def event() -> WebhookEvent | None:
        with session_scope(database) as session:
            row = session.scalars(select(WebhookEvent).where(WebhookEvent.connection_id == keyed))
            found = row.first()
            if found is None or (processing and found.status in ("received", "processing")):
                return None
            session.expunge(found)
            return found

    webhook = wait_for(event, 120, "the sandbox's webhook to be stored and processed")

    # A call the flaky provider fails again and again: retried, then dead-lettered.
    flaky_call = send_call(app, flaky, "create_message", {"text": "never"}, key="f-1")
    ok, error = outcome(flaky_call, timeout=180)
    assert not ok, error
    assert any(letter["connection_id"] == flaky for letter in dead_letters(env))

    for proc in reversed(fleet):
        proc.stop()  # a warm stop: whatever a process logs as it ends is read too
    latest = stored_token(env, oauth)
    assert latest is not None and latest.refresh_token
    found_secrets |= {latest.access_token, latest.refresh_token}

    # -- every line is one JSON object; the work can be followed --------------------------
    logs = {proc.log.stem: parsed(proc) for proc in fleet}
    lines = [ln for name in ("worker0", "worker1") for ln in logs[name]]
    assert any("listening on" in ln["message"] for ln in logs["gateway"])

    call = executed(task_lines(lines, keyed_call.id))
    assert call and all(ln["task_name"] == "integrations.call" for ln in call)
    assert all(ln["connection_id"] == keyed and ln["action"] == "create_message" for ln in call)
    assert any("succeeded" in ln["message"] and ln["connector"] == "sandbox" for ln in call)

    sync = executed([ln for ln in lines if ln.get("task_name") == "integrations.sync"])
    assert sync and all(ln["sync_id"] == sync_id for ln in sync)
    done = [ln for ln in sync if "succeeded" in ln["message"] and ln["run_id"] == run["run_id"]]
    assert done and done[0]["connection_id"] == keyed and done[0]["connector"] == "sandbox"

    retried = [ln for ln in lines if ln.get("connection_id") == flaky]
    assert {ln["task_id"] for ln in retried} == {flaky_call.id}
    assert len({ln["retries"] for ln in retried if "retries" in ln}) >= 2, retried
    assert any(ln["message"].startswith("dead letter") for ln in retried)
    received = [ln for ln in task_lines(lines, flaky_call.id) if "received" in ln["message"]]
    assert len(received) >= 2  # each retry is a new message, under the same task id

    if processing:
        handled = executed([ln for ln in lines if ln.get("event_id") == webhook.id])
        assert any(ln.get("task_name") == "integrations.process_webhook" for ln in handled)
    assert any(ln.get("delivery_id") == delivered["delivery_id"] for ln in lines)

    # -- no secret anywhere -------------------------------------------------------------
    written = (
        b"\n".join(path.read_bytes() for proc in fleet for path in (proc.log, proc.out))
        + "\n".join(cli_output).encode()
    )
    dump = redis_dump(env["SPARK_INTEGRATIONS_REDIS_URL"])
    assert keyed_call.id.encode() in written and b"celery-task-meta" in dump  # the scans see
    for secret in sorted(found_secrets):
        needle = secret.encode()
        assert needle not in written, f"a secret ({secret[:6]}...) is in a log"
        assert needle not in dump, f"a secret ({secret[:6]}...) is in Redis"
