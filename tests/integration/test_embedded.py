"""The embedded Redis: started on demand, shared by separate processes, outliving them, durable."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import redis

from spark_integrations import settings
from spark_integrations.constants import QUEUE_MAINTENANCE, TASK_PING
from spark_integrations.workers.embedded import EmbeddedRedis
from tests.integration.fleet import CLI, FleetProcess, base_env, client_app, run_cli, worker


def embedded(env: dict[str, str]) -> EmbeddedRedis:
    s = settings.load(env)
    return EmbeddedRedis(s.home, s.redis_socket)


def test_embedded_redis_is_shared_outlives_its_starter_and_keeps_its_queue(
    short_tmp: Path, processes: list[FleetProcess]
) -> None:
    env = base_env(short_tmp / "home")
    server = embedded(env)
    try:
        assert not server.ping()
        doctor = run_cli(env, "doctor", "--json")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        report = json.loads(doctor.stdout)
        assert report["ok"] is True
        assert {c["name"] for c in report["checks"]} >= {"broker", "store", "secret_keys"}
        # doctor has exited; the server it started lives on, in its own session.
        pid = server.pid()
        assert pid is not None and server.ping()
        assert os.getsid(pid) != os.getsid(0)
        with server.client() as client:
            assert client.config_get("appendonly")["appendonly"] == "yes"
            assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"

        # A worker, beat and the command line, started separately, all use that one server.
        w = worker(env, short_tmp / "worker.log")
        processes.append(w.start().wait_ready())
        b = FleetProcess(env, ["beat"], short_tmp / "beat.log")
        processes.append(b.start().wait_ready("beat: Starting"))
        ping = run_cli(env, "ping", "--json")
        assert ping.returncode == 0, ping.stderr
        assert json.loads(ping.stdout)["ok"] is True
        assert server.pid() == pid
        socket = str(settings.load(env).redis_socket)
        assert socket in w.output()
        assert socket in b.output()
        with server.client() as client:
            assert len(client.client_list()) >= 3  # the worker's connections, beat's, this one

        # Work queued with no worker survives `down` and a restart (append-only file).
        w.stop()
        b.stop()
        result = client_app(env).send_task(
            TASK_PING, kwargs={"echo": "kept"}, queue=QUEUE_MAINTENANCE
        )
        down = run_cli(env, "down")
        assert down.returncode == 0, down.stderr
        assert not server.ping() and server.pid() is None
        assert run_cli(env, "doctor").returncode == 0
        with server.client() as client:
            assert client.llen(QUEUE_MAINTENANCE) == 1
        w2 = worker(env, short_tmp / "worker2.log")
        processes.append(w2.start().wait_ready())
        assert result.get(timeout=30)["echo"] == "kept"
    finally:
        for proc in processes:
            proc.stop()
        run_cli(env, "down")


def test_down_without_a_server_says_so(short_tmp: Path) -> None:
    env = base_env(short_tmp / "home")
    out = run_cli(env, "down")
    assert out.returncode == 0
    assert "not running" in out.stdout


def test_concurrent_starts_share_one_server(short_tmp: Path) -> None:
    env = base_env(short_tmp / "home")
    try:
        procs = [
            subprocess.Popen([CLI, "doctor"], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        outs = [p.communicate(timeout=60)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        assert sum("embedded_redis: started" in o for o in outs) == 1
        server = embedded(env)
        with server.client() as client:
            assert client.ping()
    finally:
        run_cli(env, "down")


def test_deep_home_gets_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    env = base_env(deep)
    server = embedded(env)
    assert len(os.fsencode(server.socket)) <= 107
    try:
        assert run_cli(env, "doctor").returncode == 0
        assert redis.Redis(unix_socket_path=str(server.socket)).ping()
    finally:
        run_cli(env, "down")


def test_a_second_beat_on_the_same_home_refuses_to_start(
    short_tmp: Path, processes: list[FleetProcess]
) -> None:
    env = base_env(short_tmp / "home")
    try:
        first = FleetProcess(env, ["beat"], short_tmp / "beat-1.log")
        processes.append(first.start().wait_ready("beat: Starting"))
        second = subprocess.run([CLI, "beat"], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "pidfile" in (second.stdout + second.stderr).lower()
        assert first.proc is not None and first.proc.poll() is None
    finally:
        for proc in processes:
            proc.stop()
        run_cli(env, "down")


def test_doctor_fails_a_redis_that_evicts_keys(short_tmp: Path) -> None:
    from spark_integrations.checks import redis_check

    env = base_env(short_tmp / "home")
    server = embedded(env)
    try:
        server.ensure_running()
        url = f"redis+socket://{server.socket}"
        assert redis_check("broker", url, need_noeviction=True).ok
        with server.client() as client:
            client.config_set("maxmemory-policy", "allkeys-lru")
        check = redis_check("broker", url, need_noeviction=True)
        assert not check.ok and "allkeys-lru" in check.detail
        assert redis_check("result_backend", url, need_noeviction=False).ok
    finally:
        server.stop()
