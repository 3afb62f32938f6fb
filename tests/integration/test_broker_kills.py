"""Whole workers SIGKILLed every 100 calls: no call lost, none doubled, on every broker.

1,500 idempotent calls go to the sandbox under injected faults while two workers (two pool
processes each) run them; each time the sandbox has created another 100 messages, the
process group (main process and pool) of the oldest worker is SIGKILLed and a new worker
started. On a Redis broker (embedded, or this machine's) a killed worker's messages stay in its
held hash until its alive key expires (``SPARK_INTEGRATIONS_RECLAIM_AFTER``, 3 s here) and a
living worker gives them back; on RabbitMQ the broker requeues them when the connection drops,
and the new delivery may find the killed worker's request still in progress at the sandbox
(a 409 on its idempotency key, which the call retries). Either way every call must complete,
and the sandbox must have created each message exactly once.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet import (
    FleetProcess,
    SandboxProcess,
    add_connection,
    client_app,
    dead_letters,
    outcome,
    send_call,
    start_sandbox,
    wait_for,
    worker,
)

# Sixteen worker starts on a shared CI machine take a while; a lost call is reported by the
# final wait (180 s), which must come before the suite's 300 s timeout ends the test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-kills-" + uuid.uuid4().hex
CALLS = 1500
KILL_EVERY = 100
#: The fleet's own pace for the connection (calls a second): slow enough that 1,500 calls
#: last long enough for the kills, fast enough for CI.
RATE_LIMIT = 50
#: Worker log line of a reclaim (broker/reliable.py, Channel.reclaim).
GAVE_BACK = re.compile(r"Gave back (\d+) message\(s\) held by workers that died")


def kill_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with a short reclaim time; and a short visibility timeout, which only kombu's
    own fetch (``SPARK_INTEGRATIONS_BROKER_FETCH=kombu``) reads, so that a run on it ends soon
    with whatever it lost rather than waiting 15 minutes for its unacknowledged messages."""
    return {
        **env,
        "SPARK_INTEGRATIONS_RECLAIM_AFTER": "3",
        "SPARK_INTEGRATIONS_VISIBILITY_TIMEOUT": "12",
        "SPARK_INTEGRATIONS_TASK_TIME_LIMIT": "10",
    }


class Workers:
    """The run's workers, oldest first; each started under a name and log of its own."""

    def __init__(self, env: dict[str, str], tmp: Path, processes: list[Any]) -> None:
        self.env = env
        self.tmp = tmp
        self.processes = processes
        self.alive: list[FleetProcess] = []
        self.started: list[FleetProcess] = []

    def start(self) -> FleetProcess:
        n = len(self.started)
        proc = worker(self.env, self.tmp / f"worker{n}.log", f"--hostname=k{n}@%h", concurrency=2)
        self.processes.append(proc)
        self.started.append(proc)
        self.alive.append(proc.start())
        return proc

    def replace_one(self) -> None:
        """SIGKILL the process group of the oldest worker that is taking calls (the oldest if
        none is yet) and start another at once. The next kill waits for 100 more messages,
        which only a ready worker makes: kills cannot outrun the replacements."""
        ready = [proc for proc in self.alive if "ready." in proc.output()]
        victim = (ready or self.alive)[0]
        self.alive.remove(victim)
        victim.kill()
        self.start()

    def gave_back(self) -> int:
        """Messages the workers logged giving back from killed workers (Redis brokers)."""
        return sum(int(n) for proc in self.started for n in GAVE_BACK.findall(proc.output()))


def reached(box: SandboxProcess, count: int) -> int:
    """The sandbox's count of created messages once it is ``count`` or more, else 0."""
    created = int(box.stats()["messages_created"])
    return created if created >= count else 0


def wait_until_done(results: list[Any], box: SandboxProcess, timeout: float) -> None:
    """Wait for every result; on a timeout, say which calls never completed and whether the
    sandbox saw them (a call lost before its request, or after it)."""
    pending = dict(enumerate(results))

    def done() -> bool:
        for i in [i for i, r in pending.items() if r.ready()]:
            del pending[i]
        return not pending

    try:
        wait_for(done, timeout, "every call to complete", interval=1)
    except AssertionError:
        seen = {m["text"] for m in box.messages()}
        lost = sorted(pending)
        created = [i for i in lost if f"k{i}" in seen]
        raise AssertionError(
            f"{len(lost)} of {CALLS} calls never completed (indexes {lost[:20]}); the sandbox "
            f"created the message of {len(created)} of them ({created[:20]})"
        ) from None


def test_workers_killed_every_100_calls_lose_and_double_nothing(
    fleet_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Kill a whole worker every 100 of 1,500 idempotent calls under 10% faults: all complete,
    each message is created once, nothing is dead-lettered."""
    env = kill_env(fleet_env)
    box = start_sandbox(
        env,
        short_tmp,
        processes,
        f"--api-key={API_KEY}",
        "--fault-rate=0.1",
        "--slow-seconds=0.5",
    )
    cid = add_connection(
        env, "kills", {"base_url": box.url, "rate_limit": RATE_LIMIT}, f"api_key={API_KEY}"
    )
    workers = Workers(env, short_tmp, processes)
    for _ in range(2):
        workers.start()
    for proc in workers.alive:
        proc.wait_ready()
    app = client_app(env)
    started = time.monotonic()
    results = [
        send_call(app, cid, "create_message", {"text": f"k{i}"}, key=f"kill-{i}")
        for i in range(CALLS)
    ]

    kills_at: list[int] = []
    for threshold in range(KILL_EVERY, CALLS, KILL_EVERY):
        created = wait_for(
            lambda t=threshold: reached(box, t), 120, f"the sandbox to create {threshold} messages"
        )
        if created >= CALLS:
            break  # the run ended before this kill: the kill count below says so
        workers.replace_one()
        kills_at.append(created)

    wait_until_done(results, box, timeout=180)
    elapsed = time.monotonic() - started
    outcomes = [outcome(r, timeout=10) for r in results]
    failed = [(i, error) for i, (ok, error) in enumerate(outcomes) if not ok]
    assert not failed, f"{len(failed)} calls failed (index, error): {failed[:3]}"
    texts = Counter(m["text"] for m in box.messages())
    doubled = [t for t, n in texts.items() if n > 1]
    assert not doubled, f"messages created more than once: {doubled[:10]}"
    assert len(texts) == CALLS
    assert dead_letters(env) == []
    gave_back = workers.gave_back()
    print(
        f"{env['TEST_FLEET_MODE']}: {CALLS} calls in {elapsed:.1f} s, {len(kills_at)} kills "
        f"(at {kills_at}), {gave_back} message(s) given back from killed workers"
    )
    assert len(kills_at) >= 10, f"only {len(kills_at)} kills happened during the run"
    if env["TEST_FLEET_MODE"] != "rabbitmq":
        assert gave_back, "no kill caught a worker holding messages: nothing was reclaimed"
