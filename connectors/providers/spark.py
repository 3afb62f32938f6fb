"""automagik-spark's API, declared in ``connectors/manifests/spark.yaml``, with the hooks data
cannot say (read from spark 0.3.7's code, ``automagik_spark/api/routers/``):

- ``run_workflow``'s body is the input as a bare JSON string (FastAPI's ``Body(...)`` of a
  ``str``); ``create_schedule`` and ``update_schedule`` take the input as ``input_data`` and
  send it as spark's ``input_value``; ``sync_flow`` sends ``input_component`` and
  ``output_component`` (spark requires both) as ``input`` and ``output`` unless given.
- The listings (streams ``tasks``, ``workflows``, ``schedules``) are read streamed by
  :mod:`connectors.spark_listing`: one request asks every row, its body is parsed record by
  record and handed on in pages. The answer stays open between the pages of a run in this
  process (:class:`OpenWalks`); another process goes on from the stored position with a new
  request.
- ``run_workflow`` is lookable: spark takes no idempotency key, but its task rows carry each
  run's input. A run whose answer was lost is looked for among the workflow's task rows
  created since the call's first attempt (``GET /api/v1/tasks?workflow_id=W&limit=K``, newest
  first, ``K`` doubling until a row older than that or the listing's end): a row with the same
  input is the run (found, and the call returns that row); none is absent; a refused read or
  more than :data:`LOOK_ROWS` rows is unknown. Two runs of one workflow with the same input in
  that window look alike: the look then says found, so a run in doubt may be left out, never
  made twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from spark_integrations.connectors import http
from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Answer, Connector
from spark_integrations.connectors.looking import Look
from spark_integrations.connectors.manifest import declared
from spark_integrations.connectors.spark_listing import LISTING_LIMIT, Walk, Where, start_of
from spark_integrations.connectors.streams import Page, Stream
from spark_integrations.errors import FatalError, ProviderError, RetriableError

__all__ = ["LOOK_FIRST", "LOOK_ROWS", "OpenWalks", "Spark", "SparkHooks", "spark_input"]

#: Task rows the look asks for first; doubled while every row is newer than the call.
LOOK_FIRST = 20
#: Task rows a look reads at most before it says unknown.
LOOK_ROWS = 20_000
#: The field each stream's listing is sorted on, newest first (a resumed answer skips by it).
RESUME_KEYS = {"tasks": "created_at"}
#: Default component ids for ``sync_flow`` (spark requires both; Agents sources ignore them).
COMPONENT_DEFAULTS = {"input_component": "input", "output_component": "output"}


def spark_input(text: str) -> Any:
    """A run's input as spark's ``TaskResponse`` shows it: the JSON it parses to, else
    ``{"value": text}``."""
    try:
        return json.loads(text)
    except ValueError:
        return {"value": text}


def _epoch(value: Any) -> float | None:
    """An ISO-8601 time of spark's as epoch seconds (UTC when it has no offset)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class OpenWalks:
    """The listings' answers left open between pages of a run, in one client (a process).

    A walk is taken back by the run that left it, asking for the very position it stopped at;
    any other request for the same listing closes it and starts a new answer. At most
    :attr:`most` are kept, each for :attr:`idle` seconds unused.
    """

    most = 4
    idle = 120.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Walk, Any, float]] = {}

    def take(self, key: str, position: Any) -> Walk | None:
        """The walk left at ``position`` for ``key``, if one is open (then it is the caller's)."""
        with self._lock:
            self._expire()
            held = self._open.pop(key, None)
        if held is None:
            return None
        walk, left_at, _ = held
        if left_at == position:
            return walk
        walk.close()
        return None

    def put(self, key: str, walk: Walk, position: Any) -> None:
        """Keep ``walk``, stopped at ``position``, for the run's next page."""
        with self._lock:
            self._expire()
            stale = self._open.pop(key, None)
            if len(self._open) >= self.most:
                oldest = min(self._open, key=lambda k: self._open[k][2])
                stale = stale or self._open.pop(oldest)
            self._open[key] = (walk, position, time.monotonic())
        if stale is not None:
            stale[0].close()

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, _, at) in self._open.items() if now - at > self.idle]:
            self._open.pop(key)[0].close()


class SparkHooks(Connector):
    """The hook class of the declared spark connector (``class:`` in spark.yaml)."""

    _walks: OpenWalks | None = None

    # -- actions ------------------------------------------------------------------------------

    def build_request(self, action: Action, params: Mapping[str, Any]) -> dict[str, Any]:
        """The declared request, but for the three actions whose body spark reads its own way."""
        if action.name == "run_workflow":
            path, _ = action.url_path(params)
            return {"method": "POST", "path": path, "json": str(params["input"])}
        if action.name in ("create_schedule", "update_schedule"):
            path, rest = action.url_path(params)
            body = {k: v for k, v in rest.items() if k != "input_data"}
            if rest.get("input_data") is not None:
                body["input_value"] = rest["input_data"]
            return {"method": action.method, "path": path, "json": body}
        if action.name == "sync_flow":
            params = {**COMPONENT_DEFAULTS, **params}
        request = super().build_request(action, params)
        if request.get("json") == {}:  # enable_schedule, disable_schedule: spark reads no body
            request.pop("json")
        return request

    # -- streams ------------------------------------------------------------------------------

    def perform_page(
        self,
        stream: Stream,
        *,
        since: Any = None,
        position: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Answer[Page]:
        """One page of a listing, read from the answer this run left open here, else from a
        new request at the stored position (:mod:`connectors.spark_listing`)."""
        walks = self._open_walks()
        key = json.dumps([stream.name, dict(params or {}), since], sort_keys=True, default=str)
        walk = walks.take(key, position)
        if walk is None:
            walk = self._walk(stream, since, start_of(position, connector=self.name), params)
        try:
            page = walk.page(stream.page_size, stream.primary_key)
        except BaseException:
            walk.close()
            raise
        if walk.ended:
            walk.close()
        else:
            walks.put(key, walk, page.position)
        return Answer(page, walk.response)

    def _open_walks(self) -> OpenWalks:
        if self._walks is None:
            self._walks = OpenWalks()
        return self._walks

    def _walk(
        self, stream: Stream, since: Any, start: Where, params: Mapping[str, Any] | None
    ) -> Walk:
        """A new answer of ``stream``'s listing, asked at ``start``'s offset."""
        path, rest = stream.url_path(params or {})
        query: dict[str, Any] = {**stream.params, **rest, "limit": LISTING_LIMIT}
        if start.offset:
            query["offset"] = start.offset
        response = self.request("GET", path, params=query, stream=True)
        return Walk(
            response=response,
            where=Where(start.offset, 0, start.after, start.high),
            connector=self.name,
            stream=stream.name,
            replication_key=stream.replication_key,
            since=since,
            resume_key=RESUME_KEYS.get(stream.name),
            margin=stream.lookback,
            limit=LISTING_LIMIT,
            resumed=start if start.rows else None,
        )

    # -- look before resend -------------------------------------------------------------------

    def lookable(self, action: Action) -> bool:
        """``run_workflow`` can be looked for in the workflow's task rows."""
        return action.name == "run_workflow"

    def look(self, action: Action, params: dict[str, Any], since: float) -> Look:
        """Look for the run among the workflow's task rows created since ``since`` (module
        docstring).

        Raises:
            RetriableError: spark failed for now (5xx, no answer): look again later.
        """
        workflow = str(params.get("workflow_id") or "")
        text = str(params.get("input") or "")
        stamp = datetime.fromtimestamp(max(since, 0.0), UTC).isoformat(timespec="seconds")
        where = f"spark's task runs of workflow {workflow} created since {stamp}"
        if not self.lookable(action):
            return Look("unknown", detail=f"nothing ({action.name} cannot be looked for)")
        try:
            found = self.find_run(workflow, text, since)
        except RetriableError:
            raise
        except ProviderError as exc:
            return Look("unknown", detail=f"{where}, which spark refused to list ({exc})")
        if found is None:
            return Look("unknown", detail=f"{where}, more than {LOOK_ROWS} rows")
        if not found:
            return Look("absent", detail=where)
        return Look("found", data=found, detail=where)

    def find_run(self, workflow: str, text: str, since: float) -> dict[str, Any] | None:
        """The workflow's task row created at or after ``since`` with ``text`` as its input;
        ``{}`` when the rows since then were all read without one; ``None`` when there are
        more than :data:`LOOK_ROWS` of them."""
        wanted = (text, spark_input(text))
        limit = min(LOOK_FIRST, LOOK_ROWS)
        while True:
            query = {"workflow_id": workflow, "limit": limit}
            response = self.request("GET", "/api/v1/tasks", params=query)
            body = http.parse_json(response, connector=self.name)
            rows = body.get("items") if isinstance(body, dict) else body
            if not isinstance(rows, list):
                raise FatalError(
                    f"{self.name}'s task listing is neither a list nor an envelope.",
                    connector=self.name,
                )
            older = False
            for row in rows:
                if not isinstance(row, dict):
                    continue
                created = _epoch(row.get("created_at"))
                if created is not None and created < since:
                    older = True
                    continue
                if row.get("input_data") in wanted:
                    return row
            more = body.get("has_more") if isinstance(body, dict) else len(rows) >= limit
            if older or not more:
                return {}
            if limit >= LOOK_ROWS:
                return None
            limit = min(limit * 2, LOOK_ROWS)  # the last request asks LOOK_ROWS itself


Spark = declared(__file__, "spark.yaml")
