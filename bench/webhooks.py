"""Webhook intake: signed deliveries to a real gateway process, stored on PostgreSQL.

A load generator on loopback (this process, asyncio over plain keep-alive HTTP/1.1 sockets, every
request signed per Standard Webhooks ahead of time so the generator spends its time sending)
posts to ``/webhooks/sandbox/{connection_id}`` of ``spark-integrations gateway`` in server mode:

* ``capacity``: a closed loop of concurrent senders for a few seconds, the most the gateway takes;
* ``clean``: an open loop at ``rate`` deliveries a second for ``seconds``, all new and valid;
* ``mixed``: the same rate with 10% repeats of a delivery already accepted and 10% forged.

Latency is measured from when a delivery was due to be sent (open loop), so a gateway falling
behind shows in p99 rather than in a slower generator. Accepted means answered 2xx for a new event;
afterwards the store is counted, so every accepted event is known to be there.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
import requests

from bench.harness import CLI, Proc, fleet_env, wait_for

__all__ = ["webhooks"]

CONNECTIONS = 32


@dataclass
class Tally:
    """Answers of one phase: statuses, and latencies (seconds) of the accepted."""

    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def add(self, status: int, latency: float, accepted: bool) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if accepted:
            self.latencies.append(latency)

    def summary(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

        return {
            "accepted": len(ordered),
            "accepted per second": round(len(ordered) / seconds, 1),
            "p50 ms": pct(0.50),
            "p99 ms": pct(0.99),
            "mean ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connection errors": self.errors,
        }


class Signer:
    """Standard Webhooks deliveries for one secret, as raw HTTP/1.1 requests."""

    def __init__(self, host: str, path: str, secret: str) -> None:
        self.host, self.path = host, path
        self.key = base64.b64decode(secret.split("_", 1)[1])

    def request(self, number: int, *, forged: bool = False) -> tuple[str, bytes]:
        mid = f"msg_{uuid.uuid4().hex}"
        body = json.dumps({"type": "item.updated", "data": {"id": f"item-{number}"}}).encode()
        stamp = str(int(time.time()))
        key = os.urandom(32) if forged else self.key
        mac = hmac.new(key, f"{mid}.{stamp}.".encode() + body, hashlib.sha256).digest()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"webhook-id: {mid}\r\nwebhook-timestamp: {stamp}\r\n"
            f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\n\r\n"
        )
        return mid, head.encode() + body


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes
) -> tuple[int, bytes]:
    reader, writer = conn
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    found = re.search(rb"(?i)content-length:\s*(\d+)", head)
    body = await reader.readexactly(int(found.group(1))) if found else b""
    return status, body


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed_loop(port: int, plan: list[bytes], seconds: float) -> tuple[Tally, float]:
    tally = Tally()
    it = iter(plan)
    deadline = time.monotonic() + seconds

    async def sender() -> None:
        conn = await _connect(port)
        try:
            while time.monotonic() < deadline:
                raw = next(it, None)
                if raw is None:
                    return
                t0 = time.monotonic()
                try:
                    status, body = await _exchange(conn, raw)
                except (OSError, asyncio.IncompleteReadError):
                    tally.errors += 1
                    conn = await _connect(port)
                    continue
                new = 200 <= status < 300 and b'"duplicate":true' not in body.replace(b" ", b"")
                tally.add(status, time.monotonic() - t0, new)
        finally:
            conn[1].close()

    started = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
    return tally, time.monotonic() - started


async def _open_loop(port: int, plan: list[bytes], rate: float) -> tuple[Tally, float]:
    tally = Tally()
    pool: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(CONNECTIONS * 2):
        pool.put_nowait(await _connect(port))

    async def one(raw: bytes, due: float) -> None:
        conn = await pool.get()
        try:
            status, body = await _exchange(conn, raw)
        except (OSError, asyncio.IncompleteReadError):
            tally.errors += 1
            conn[1].close()
            conn = await _connect(port)
        else:
            new = 200 <= status < 300 and b'"duplicate":true' not in body.replace(b" ", b"")
            tally.add(status, time.monotonic() - due, new)
        pool.put_nowait(conn)

    started = time.monotonic()
    tasks = []
    for i, raw in enumerate(plan):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(raw, due)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    while not pool.empty():
        pool.get_nowait()[1].close()
    return tally, elapsed


def _plan(signer: Signer, count: int, duplicates: float, forged: float) -> list[bytes]:
    plan: list[bytes] = []
    sent: list[bytes] = []
    for i in range(count):
        slot = i % 10
        if sent and slot < round(duplicates * 10):
            plan.append(sent[(i * 7919) % len(sent)])
        elif slot >= 10 - round(forged * 10):
            plan.append(signer.request(i, forged=True)[1])
        else:
            raw = signer.request(i)[1]
            sent.append(raw)
            plan.append(raw)
    return plan


def _stored(env: dict[str, str]) -> int:
    url = env["SPARK_INTEGRATIONS_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM webhook_events").fetchone()
        return int(row[0]) if row else 0


def webhooks(
    seconds: float = 30.0, rate: float = 500.0, processes: tuple[int, ...] = (1, 2)
) -> dict[str, Any]:
    """For a gateway of each number of ``processes``: its capacity, then ``rate``/s clean and
    mixed for ``seconds`` each."""
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    results: dict[str, Any] = {}
    with fleet_env() as env:
        added = subprocess.run(
            [CLI, "connections", "add", "sandbox", "--name", "hooks", "--json",
             "--config", json.dumps({"base_url": "http://127.0.0.1:9"}),
             "--secret", "api_key=bench", "--secret", f"webhook_secret={secret}"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        cid = json.loads(added.stdout)["id"]
        accepted = 0
        for count in processes:
            port = _free_port()
            gateway = Proc(
                [CLI, "gateway", "--port", str(port), "--workers", str(count)],
                env,
                f"webhook-gateway-{count}",
            )
            try:
                base = f"http://127.0.0.1:{port}"
                wait_for(lambda: _up(base), 60, "the gateway")  # noqa: B023 (waited here)
                signer = Signer(f"127.0.0.1:{port}", f"/webhooks/sandbox/{cid}", secret)
                phases = _phases(port, signer, seconds, rate)
            finally:
                gateway.stop()
            accepted += sum(r["accepted"] for r in phases.values())
            results[f"gateway of {count} process{'' if count == 1 else 'es'}"] = phases
        results["stored"] = _stored(env)
        results["every accepted event stored"] = results["stored"] == accepted
    return results


def _phases(port: int, signer: Signer, seconds: float, rate: float) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    plan = _plan(signer, 20_000, 0.0, 0.0)
    tally, elapsed = asyncio.run(_closed_loop(port, plan, min(10.0, seconds)))
    phases[f"capacity ({CONNECTIONS} senders, closed loop)"] = tally.summary(elapsed)
    count = int(seconds * rate)
    for name, dup, forged in (("clean", 0.0, 0.0), ("10% repeats, 10% forged", 0.1, 0.1)):
        tally, elapsed = asyncio.run(_open_loop(port, _plan(signer, count, dup, forged), rate))
        phases[f"{name} at {rate:g}/s"] = tally.summary(elapsed)
    return phases


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
