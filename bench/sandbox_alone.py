"""Throughput of the sandbox alone: how many requests/s it answers, so fleet benchmarks know
whether they measure the fleet or the sandbox.

Starts ``python -m spark_integrations.sandbox --port 0`` in a subprocess, then for each scenario
drives it from
``--threads`` threads (in each of ``--procs`` client processes), each thread with its own
keep-alive connection, for ``--seconds`` seconds, and prints requests/s and the server's CPU:

- ``POST /v1/messages`` with an API key;
- ``GET /v1/items`` 100-record cursor pages, walking the dataset over and over.

The client is a ``requests.Session`` per thread (what the fleet uses), or with
``--client http.client`` a bare ``http.client.HTTPConnection``, much lighter, which shows how far
the server goes when the client is not the bottleneck (both share this machine's cores).

Usage: ``python bench/sandbox_alone.py [--threads 4] [--procs 1] [--seconds 5]
[--client requests|http.client]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"


class Client(Protocol):
    """One keep-alive connection to the sandbox."""

    def get_json(self, path: str, params: dict[str, str]) -> Any: ...

    def post_json(self, path: str, data: Any) -> Any: ...

    def close(self) -> None: ...


class RequestsClient:
    """A ``requests.Session`` sending the API key."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["X-API-Key"] = API_KEY

    def get_json(self, path: str, params: dict[str, str]) -> Any:
        with self.session.get(self.url + path, params=params, timeout=30) as answer:
            answer.raise_for_status()
            return answer.json()

    def post_json(self, path: str, data: Any) -> Any:
        with self.session.post(self.url + path, json=data, timeout=30) as answer:
            answer.raise_for_status()
            return answer.json()

    def close(self) -> None:
        self.session.close()


class RawClient:
    """A bare ``http.client.HTTPConnection``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)

    def _call(self, method: str, path: str, body: bytes | None) -> Any:
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        self.conn.request(method, path, body=body, headers=headers)
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status >= 400:
            raise RuntimeError(f"{method} {path}: {answer.status}")
        return json.loads(data)

    def get_json(self, path: str, params: dict[str, str]) -> Any:
        return self._call("GET", f"{path}?{urlencode(params)}", None)

    def post_json(self, path: str, data: Any) -> Any:
        return self._call("POST", path, json.dumps(data).encode())

    def close(self) -> None:
        self.conn.close()


CLIENTS: dict[str, Callable[[str], Client]] = {
    "requests": RequestsClient,
    "http.client": RawClient,
}

Scenario = Callable[[Client], None]


def post_message(client: Client) -> None:
    """One message creation."""
    client.post_json("/v1/messages", {"text": "hello"})


def make_pages() -> Scenario:
    """A scenario that walks the items with cursor pages, from the start again at the end."""
    cursor: list[str | None] = [None]

    def get_page(client: Client) -> None:
        params = {"limit": "100", **({"cursor": cursor[0]} if cursor[0] else {})}
        cursor[0] = client.get_json("/v1/items", params)["next_cursor"]

    return get_page


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "POST /v1/messages": lambda: post_message,
    "GET /v1/items (100/page)": make_pages,
}


def drive(url: str, name: str, client_kind: str, threads: int, seconds: float) -> int:
    """Requests completed by ``threads`` threads in ``seconds`` seconds."""
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        step = SCENARIOS[name]()
        client = CLIENTS[client_kind](url)
        try:
            while time.monotonic() < deadline:
                step(client)
                counts[index] += 1
        finally:
            client.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts)


def _drive_in_process(job: tuple[str, str, str, int, float]) -> int:
    return drive(*job)


def server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    """Run each scenario and print requests/s."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=4, help="client threads per process")
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    parser.add_argument("--records", type=int, default=1000, help="items in the dataset")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="requests")
    args = parser.parse_args()

    command = [
        sys.executable,
        "-m",
        "spark_integrations.sandbox",
        "--port",
        "0",
        "--api-key",
        API_KEY,
    ]
    command += ["--records", str(args.records), "--seed", "1"]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        if not line.startswith("sandbox listening on "):
            print(f"the sandbox did not start: {line!r}", file=sys.stderr)
            return 1
        url = line.removeprefix("sandbox listening on ")
        print(
            f"sandbox at {url}; client {args.client}, {args.procs} process(es) x "
            f"{args.threads} thread(s), {args.seconds:g} s per scenario, {os.cpu_count()} cores"
        )
        for name in SCENARIOS:
            cpu_before = server_cpu_seconds(server.pid)
            started = time.monotonic()
            job = (url, name, args.client, args.threads, args.seconds)
            if args.procs == 1:
                total = drive(*job)
            else:
                with multiprocessing.Pool(args.procs) as pool:
                    total = sum(pool.map(_drive_in_process, [job] * args.procs))
            elapsed = time.monotonic() - started
            cpu_after = server_cpu_seconds(server.pid)
            cpu = ""
            if cpu_before is not None and cpu_after is not None and total:
                used = cpu_after - cpu_before
                cpu = (
                    f"; server CPU {used / elapsed:4.0%} of a core, {used / total * 1e6:.0f} us/req"
                )
            print(
                f"{name:26s} {total:7d} requests in {elapsed:5.2f} s = "
                f"{total / elapsed:6.0f} req/s{cpu}"
            )
        with requests.Session() as session:
            session.trust_env = False
            with session.get(f"{url}/_sandbox/stats", timeout=5) as answer:
                stats = answer.json()
        print(
            f"server counted {stats['requests']} API requests, {stats['messages_created']} messages"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"sandbox exit status after SIGTERM: {server.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
