"""An Automagik Agents source on loopback: what automagik-spark 0.3.7 calls to run a workflow.

From spark's own code (``automagik_spark/core/workflows/automagik_agents.py``), which sends the
source's key as ``x-api-key``:

- ``GET /health`` answers ``{"status": "healthy"}`` and ``GET /`` a name and version (spark
  checks both when the source is added);
- ``GET /api/v1/agents``: ``[{"name", "type", "description"}]`` (spark uses the name as the
  flow's id);
- ``POST /api/v1/agent/{name}/run`` ``{"message_content", "session_name", "user_id",
  "session_origin"}``: spark stores the answer's ``message`` as its task's output; an error
  status makes spark's task ``failed``.

Agents: ``echo`` answers with what it got; ``fail`` answers 500 (a failing workflow, whose spark
task is ``failed``); ``slow`` (and any agent a test adds named ``slow-...``) answers as ``echo``
after holding the request :attr:`AgentsSourceEmulator.slow_seconds` (3 s by default: under
spark's 5 s timeout, so spark completes its task while the caller's request is in flight, for a
worker killed mid-request; :attr:`AgentsSourceEmulator.holding` counts the requests held now).
Each run is kept in :attr:`AgentsSourceEmulator.runs` when it arrives.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tests.emulators.common import Emulator, Request, Response, Route

__all__ = ["AgentsSourceEmulator"]


class AgentsSourceEmulator(Emulator):
    """A stand-in Automagik Agents API with the agents ``echo`` and ``fail``."""

    name = "agents_source"

    def __init__(self, api_key: str | None = None, slow_seconds: float = 3.0) -> None:
        self.api_key = api_key or "agents-" + secrets.token_hex(8)
        self.slow_seconds = slow_seconds
        self.holding = 0
        self.runs: list[dict[str, Any]] = []
        self.agents = {
            "echo": "Answers with the message it was given.",
            "fail": "Always fails (HTTP 500).",
            "slow": "Answers as echo after holding the request a few seconds.",
        }
        super().__init__()

    def reset_state(self) -> None:
        self.runs.clear()

    def routes(self) -> list[Route]:
        return [
            Route("GET", r"/health", self.health, "health"),
            Route("GET", r"/", self.root, "root"),
            Route("GET", r"/api/v1/agents", self.list_agents, "agents"),
            Route("POST", r"/api/v1/agent/(?P<name>[^/]+)/run", self.run, "run"),
        ]

    def _refused(self, req: Request) -> Response | None:
        if req.headers.get("x-api-key") != self.api_key:
            return Response.json({"detail": "Invalid API key"}, status=401)
        return None

    def health(self, req: Request) -> Response:
        return Response.json({"status": "healthy", "version": "0.0-emulated"})

    def root(self, req: Request) -> Response:
        return self._refused(req) or Response.json(
            {"name": "Emulated Agents", "version": "0.0-emulated", "description": "tests"}
        )

    def list_agents(self, req: Request) -> Response:
        refused = self._refused(req)
        if refused:
            return refused
        return Response.json(
            [{"name": n, "type": "emulated", "description": d} for n, d in self.agents.items()]
        )

    def run(self, req: Request, name: str) -> Response:
        refused = self._refused(req)
        if refused:
            return refused
        if name not in self.agents:
            return Response.json({"detail": f"agent {name} not found"}, status=404)
        body = req.json() or {}
        message = body.get("message_content")
        self.runs.append({"agent": name, "message": message, "body": body})
        if name == "fail":
            return Response.json({"detail": "the agent failed on purpose"}, status=500)
        if name == "slow" or name.startswith("slow-"):
            # The emulator serves each request on a thread of its own: only this one waits.
            self.holding += 1
            try:
                time.sleep(self.slow_seconds)
            finally:
                self.holding -= 1
        return Response.json(
            {"message": f"echo: {message}", "session_id": body.get("session_name"),
             "success": True}
        )  # fmt: skip
