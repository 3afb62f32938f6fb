"""The health checks of docker/compose.yaml, run as written against the fleet's real processes.

No Docker engine runs here, so each service's command runs as a process of this machine (in
embedded mode, loopback only, on free ports instead of the container's fixed ones) and its
health check runs as Docker would run it in the container: a ``CMD`` list as it is, a
``CMD-SHELL`` line through ``sh -c`` after compose's interpolation (``$$`` is ``$``), with
``HOSTNAME`` set as Docker sets it. Each check passes on a healthy process and fails when what
it watches is not there.
"""

from __future__ import annotations

import glob
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.fleet import FleetProcess, base_env, free_port, stop_embedded_redis, wait_for
from tests.unit.test_docker_compose import interpolate, load_compose

SERVICES = load_compose()["services"]


def check(service: str, env: dict[str, str], **replace: str) -> int:
    """Run ``service``'s health check as Docker would; its exit status. ``replace`` swaps
    literal parts of it (the container's fixed ports for this test's free ones)."""
    kind, *test = SERVICES[service]["healthcheck"]["test"]
    if kind == "CMD-SHELL":
        test = ["sh", "-c", interpolate(test[0], {})]
    for old, new in replace.items():
        test = [part.replace(old, new) for part in test]
    done = subprocess.run(test, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode


def command(service: str, **replace: str) -> list[str]:
    """The service's command, with the literal parts in ``replace`` swapped."""
    args = [str(a) for a in SERVICES[service]["command"]]
    for old, new in replace.items():
        args = [new if a == old else a for a in args]
    return args


def test_the_compose_health_checks_watch_the_fleets_processes(
    short_tmp: Path, processes: list[Any]
) -> None:
    home = short_tmp / "home"
    env = base_env(
        home,
        SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH="ops:a-password-the-check-does-not-need",
        # As in the container: the fleet's commands and its Python first on PATH, and Docker's
        # HOSTNAME, which the workers' checks name them by.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        HOSTNAME=socket.gethostname(),
    )
    gateway_port, flower_port = str(free_port()), str(free_port())
    try:
        started = {
            "worker-calls": FleetProcess(env, command("worker-calls"), short_tmp / "calls.log"),
            "beat": FleetProcess(env, command("beat"), short_tmp / "beat.log"),
            "gateway": FleetProcess(
                env,
                command("gateway", **{"0.0.0.0": "127.0.0.1", "8130": gateway_port}),
                short_tmp / "gateway.log",
            ),
            "flower": FleetProcess(
                env,
                command("flower", **{"0.0.0.0": "127.0.0.1", "5555": flower_port}),
                short_tmp / "flower.log",
            ),
        }
        for proc in started.values():
            processes.append(proc.start())
        started["worker-calls"].wait_ready("ready.")

        # A worker answers the ping sent to its own name; another role's check, naming a
        # worker that is not there, fails (with a short wait instead of the check's 20 s).
        assert check("worker-calls", env) == 0
        assert check("worker-syncs", env, **{"--timeout 20": "--timeout 2"}) != 0

        # The gateway's and Flower's checks (Flower's without its password) pass once they serve.
        gateway = {"127.0.0.1:8130": f"127.0.0.1:{gateway_port}"}
        flower = {"127.0.0.1:5555": f"127.0.0.1:{flower_port}"}
        wait_for(lambda: check("gateway", env, **gateway) == 0, 60, "the gateway's check to pass")
        wait_for(lambda: check("flower", env, **flower) == 0, 60, "Flower's check to pass")

        # Beat's check passes while beat saves its schedule state, and fails once the state is
        # older than the check allows. Beat saves it right after its first send and then every
        # 3 minutes: after its second send (5 s later) nothing saves it within this test.
        def sends() -> int:
            return started["beat"].output().count("Sending due task")

        wait_for(lambda: sends() >= 2, 60, "beat to send its periodic jobs twice")
        state = glob.glob(str(home / "celerybeat-schedule*"))
        assert state, os.listdir(home)
        assert check("beat", env) == 0
        limit = int(re.findall(r"> (\d+)", SERVICES["beat"]["healthcheck"]["test"][-1])[0])
        stale = time.time() - limit - 60
        for path in state:
            os.utime(path, (stale, stale))
        assert check("beat", env) == 1

        # Stopped, the gateway fails its check.
        started["gateway"].kill()
        assert check("gateway", env, **gateway) != 0
    finally:
        for proc in processes:
            proc.kill()
        stop_embedded_redis(env)
