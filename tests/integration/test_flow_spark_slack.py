"""The flow "spark -> Slack": spark's failed task runs, posted once each to a Slack channel.

Against the real automagik-spark 0.3.7 (the session fixture ``real_spark``), real fleet
workers and the fleet's own beat, and the Slack emulator. The operator's recipe (README, and
docs/recipes.md) is one command::

    syncs add SPARK tasks --param status=failed --param workflow_id=W --every 1m \
        --destination action:SLACK:post_message --with channel=C... --with "text=..."

Spark 0.3.7's task rows carry the workflow's id, not its name, so the sync is per workflow and
its name is a literal of the text template; the error is ``{error}`` and the link spark's own
``{base}/api/v1/tasks/{id}``. The text holds ``{tries}`` too: a task that spark retries and
that fails again is a new version of its row, so a new failure posted again, and its text
differs from the first post's, which lets the look before a resend tell the two apart.

What is checked:

- each failure is posted exactly once, never twice, even though the worker's whole process
  group is SIGKILLed while a post is out (Slack applied it, its answer is held by the
  emulator and lost with the worker): the next delivery of that call looks in the channel's
  history, finds the post and does not send it again;
- a task of the same workflow that completed is not posted (the stream's status filter);
- the task retried by spark's own command line (``automagik-spark tasks retry``) and failing
  again is posted again, once, on beat's next tick; another run of the sync posts nothing;
- no spark API key, Slack token or fleet secret key is in any worker or beat log, task result
  or dead letter.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from spark_integrations.store import SyncDefinition, session_scope
from spark_integrations.store.types import utcnow
from tests.emulators.agents_source import AgentsSourceEmulator
from tests.emulators.common import Request, Response
from tests.emulators.slack import Slack
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    broker_idle,
    dead_letters,
    free_port,
    run_cli,
    wait_for,
    worker,
)
from tests.integration.providers import start_emulator

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(420)]

CHANNEL = "C012AB3CD"  # the emulator's #general
#: Flower's login in this test (server mode requires one).
FLOWER_AUTH = ("ops", "flower-" + secrets.token_hex(8))
TOKEN = "xoxb-flow-" + uuid.uuid4().hex
#: The secret under which the spark connector keeps spark's API key (sent as X-API-Key).
SPARK_SECRET = "api_key"
QUEUES = ("integrations.calls", "integrations.syncs")


class FailingAgents(AgentsSourceEmulator):
    """An Automagik Agents source whose one agent (a name of this test's own, so that spark,
    shared by the tests of a process, keeps its workflow apart) fails unless the message is
    ``ok``."""

    def __init__(self, agent: str) -> None:
        super().__init__()
        self.agent = agent
        self.agents = {agent: "Fails unless the message is 'ok'."}

    def run(self, req: Request, name: str) -> Response:
        body = req.json() or {}
        if name == self.agent and body.get("message_content") != "ok" and not self._refused(req):
            self.runs.append({"agent": name, "message": body.get("message_content")})
            return Response.json({"detail": "the report could not be built"}, status=500)
        return super().run(req, name)


def spark_cli(spark: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """Spark's own command line, in its own environment (as its operator runs it)."""
    return subprocess.run(
        [str(Path(spark.python).with_name("automagik-spark")), *args],
        env=spark.env, cwd=spark.workdir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def start_worker(env: dict[str, str], log: Path, processes: list[Any]) -> FleetProcess:
    proc = worker(env, log, f"--hostname=flow-{uuid.uuid4().hex[:6]}@%h", concurrency=2)
    processes.append(proc)
    return proc.start().wait_ready()


def posts_of(emu: Slack, task_id: str) -> list[str]:
    return [m["text"] for m in emu.posted(CHANNEL) if task_id in m["text"]]


def settled(env: dict[str, str]) -> bool:
    """No sync or call queued or unacknowledged: every post the runs sent has ended."""
    return broker_idle(env, *QUEUES)


def results(env: dict[str, str]) -> list[str]:
    """Every task result the result backend keeps, as the JSON text stored."""
    client = redis.Redis.from_url(env["SPARK_INTEGRATIONS_RESULT_BACKEND"])
    try:
        keys = list(client.scan_iter(match="celery-task-meta-*"))
        return [(client.get(key) or b"").decode(errors="replace") for key in keys]
    finally:
        client.close()


def flower_tasks(url: str) -> dict[str, Any] | None:
    """The tasks Flower shows (its API, logged in), or None while it does not answer."""
    try:
        answer = requests.get(f"{url}/api/tasks", auth=FLOWER_AUTH, timeout=10)
    except requests.RequestException:
        return None
    return dict(answer.json()) if answer.status_code == 200 else None


@pytest.fixture
def flow_env(redis_env: dict[str, str]) -> dict[str, str]:
    """A short reclaim time, so the calls of a killed worker come back within seconds."""
    return {**redis_env, "SPARK_INTEGRATIONS_RECLAIM_AFTER": "4"}


def test_failed_spark_tasks_are_posted_to_slack_once_each(
    real_spark: Any, flow_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = {**flow_env, "SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)}
    name = f"nightly-report-{secrets.token_hex(3)}"
    # Flower watches the whole flow (it switches task events on in every worker it sees).
    flower_url = f"http://127.0.0.1:{free_port()}"
    flower = FleetProcess(
        env, ["flower", "--port", flower_url.rsplit(":", 1)[1]], short_tmp / "flower.log"
    )
    processes.append(flower)
    flower.start()
    wait_for(lambda: flower_tasks(flower_url) is not None, 60, "Flower to answer")
    agents = start_emulator(FailingAgents(name), processes)
    slack = start_emulator(Slack(tokens=(TOKEN,)), processes)
    real_spark.add_source(agents.url, agents.api_key)
    workflow = real_spark.sync_flow(name, agents.url)["id"]

    # Two failures and one success of the workflow, in spark, before the sync exists.
    first = real_spark.run_workflow(workflow, "build the report")
    second = real_spark.run_workflow(workflow, "build it again")
    fine = real_spark.run_workflow(workflow, "ok")
    assert [first["status"], second["status"], fine["status"]] == ["failed", "failed", "completed"]

    spark_conn = add_connection(
        env, "spark", {"base_url": real_spark.url}, f"{SPARK_SECRET}={real_spark.api_key}",
        provider="spark",
    )  # fmt: skip
    slack_conn = add_connection(
        env, "slack", {"base_url": slack.url + "/api"}, f"bot_token={TOKEN}", provider="slack"
    )
    text = (
        f"Spark workflow {name} failed (tries: {{tries}}): {{error}} "
        f"{real_spark.url}/api/v1/tasks/{{id}}"
    )
    added = run_cli(
        env, "syncs", "add", spark_conn, "tasks",
        "--param", "status=failed", "--param", f"workflow_id={workflow}", "--every", "1m",
        "--destination", f"action:{slack_conn}:post_message",
        "--with", f"channel={CHANNEL}", "--with", f"text={text}", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    view = json.loads(added.stdout)
    sync_id = view["id"]
    assert view["destination_params"] == {"channel": CHANNEL, "text": text}, view
    # The first minute is not waited for: its due time is brought forward (the schedule stays
    # every minute, so the next tick is a minute after this one).
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        session.get_one(SyncDefinition, sync_id).next_run_at = utcnow() + timedelta(seconds=2)

    # The first post is stored by Slack, its answer held: its worker is killed meanwhile.
    slack.lose_answers("chat.postMessage", hold=True)
    doomed = start_worker(env, short_tmp / "worker-killed.log", processes)
    beat = FleetProcess(env, ["beat"], short_tmp / "beat.log")
    processes.append(beat)
    beat.start().wait_ready("beat: Starting")

    # Beat's first tick: a post goes out and Slack applies it; its worker dies before the answer.
    wait_for(lambda: slack.stats()["held"], 90, "a post of beat's first tick held by Slack")
    doomed.kill()
    slack.release()
    assert posts_of(slack, first["id"]) or posts_of(slack, second["id"])
    survivor = start_worker(env, short_tmp / "worker.log", processes)

    wait_for(
        lambda: posts_of(slack, first["id"]) and posts_of(slack, second["id"]) and settled(env),
        120,
        "both failures posted and the killed worker's calls settled",
    )
    for task in (first, second):
        assert posts_of(slack, task["id"]) == [
            text.format(tries=task["tries"], error=task["error"], id=task["id"])
        ]
    assert not posts_of(slack, fine["id"]), "a completed task was posted"

    # Spark retries the first task (its own command line); it fails again: a new failure.
    # Another task fails too. Beat's next tick posts both, once.
    retried = spark_cli(real_spark, "tasks", "retry", first["id"])
    assert retried.returncode == 0, retried.stdout + retried.stderr
    again = real_spark.api("GET", f"/tasks/{first['id']}")
    assert again["status"] == "failed" and again["tries"] == first["tries"] + 1, again
    third = real_spark.run_workflow(workflow, "and once more")
    assert third["status"] == "failed"
    wait_for(
        lambda: len(posts_of(slack, first["id"])) == 2 and posts_of(slack, third["id"]),
        150,
        "beat's next tick to post the retried task's failure and the new one",
    )
    wait_for(lambda: settled(env), 60, "the tick's posts to settle")
    ran = run_cli(env, "syncs", "run", sync_id, "--wait", "--json", timeout=120)
    assert ran.returncode == 0, ran.stderr
    wait_for(lambda: settled(env), 60, "the last run's posts to settle")

    expected = {
        first["id"]: [
            text.format(tries=first["tries"], error=first["error"], id=first["id"]),
            text.format(tries=again["tries"], error=again["error"], id=first["id"]),
        ],
        second["id"]: [text.format(tries=second["tries"], error=second["error"], id=second["id"])],
        third["id"]: [text.format(tries=third["tries"], error=third["error"], id=third["id"])],
    }
    assert {t: posts_of(slack, t) for t in expected} == expected
    assert len(slack.posted(CHANNEL)) == 4, [m["text"] for m in slack.posted(CHANNEL)]
    letters = dead_letters(env)
    assert letters == [], letters
    # The post whose answer was lost with its worker was looked for in the channel and found.
    kept = [json.loads(raw).get("result") for raw in results(env)]
    found = [r for r in kept if isinstance(r, dict) and r.get("found") is True]
    assert len(found) == 1, kept
    assert found[0]["data"]["message"]["text"] in expected[first["id"]] + expected[second["id"]], (
        found
    )

    # No secret anywhere the fleet writes.
    secret_values = (real_spark.api_key, TOKEN, env["SPARK_INTEGRATIONS_SECRET_KEYS"])
    for proc in (doomed, survivor, beat):
        log = proc.output()
        assert "Traceback" not in log or proc is doomed, log[-3000:]
        leaked = [s for s in secret_values if s in log]
        assert not leaked, f"a secret is in {proc.log.name}"
    assert not [s for s in secret_values for raw in results(env) if s in raw]
    assert not [s for s in secret_values if s in json.dumps(letters)]
    # Nor in Flower, which shows each task's arguments and result: it saw the flow's calls.
    seen = wait_for(
        lambda: [t for t in (flower_tasks(flower_url) or {}).values()
                 if t.get("name") == "integrations.call" and t.get("state") == "SUCCESS"],
        60, "Flower to show the flow's calls",
    )  # fmt: skip
    shown = json.dumps(flower_tasks(flower_url))
    assert len(seen) >= 1 and slack_conn in shown  # the calls' arguments, as Flower shows them
    assert not [s for s in secret_values if s in shown]
