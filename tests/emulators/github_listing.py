"""The GitHub emulator's listings: repository issues, pull requests and issue comments, with
GitHub's query parameters, page-number pagination and ``Link`` header.

GitHub's ``Link`` URLs name the repository by its id (``/repositories/1300192/issues?page=2``),
not by ``owner/repo``: the emulator serves both, so a client follows them as it would GitHub's.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from tests.emulators import github_objects as obj
from tests.emulators.common import Request, Response, Route
from tests.emulators.github_errors import error, validation

if TYPE_CHECKING:
    from tests.emulators.github import GitHub

__all__ = ["listing_routes"]

Render = Callable[[str, str, dict[str, Any]], dict[str, Any]]


def listing_routes(emu: GitHub, p: str, repo: str) -> list[Route]:
    """The listing routes, by ``owner/repo`` and by repository id."""
    by_id = rf"{p}/repositories/(?P<repo_id>\d+)"
    routes = []
    for name, suffix, lister in (
        ("list_issue_comments", "/issues/comments", list_comments),
        ("list_issues", "/issues", list_issues),
        ("list_pulls", "/pulls", list_pulls),
    ):
        routes.append(Route("GET", repo + suffix, emu._api(_by_name(emu, lister)), name))
        routes.append(Route("GET", by_id + suffix, emu._api(_by_id(emu, lister)), name))
    return routes


def _by_name(emu: GitHub, lister: Callable[..., Response]) -> Callable[..., Response]:
    def handler(req: Request, owner: str, repo: str) -> Response:
        data = emu.repos.get(f"{owner}/{repo}")
        return lister(emu, req, data) if data else _not_found()

    return handler


def _by_id(emu: GitHub, lister: Callable[..., Response]) -> Callable[..., Response]:
    def handler(req: Request, repo_id: str) -> Response:
        found = [d for d in emu.repos.values() if d["id"] == int(repo_id)]
        return lister(emu, req, found[0]) if found else _not_found()

    return handler


def _not_found() -> Response:
    return error(404, "Not Found")


def _invalid(field: str) -> Response:
    return validation("Issue", field, "invalid")


def _since(req: Request) -> float | Response | None:
    """``since`` (ISO 8601, ``YYYY-MM-DDTHH:MM:SSZ``) as epoch seconds; 422 when malformed."""
    raw = req.arg("since")
    if raw is None:
        return None
    try:
        return float(
            calendar.timegm(time.strptime(raw.replace("+00:00", "Z"), "%Y-%m-%dT%H:%M:%SZ"))
        )
    except ValueError:
        return _invalid("since")


def _sorted(
    items: list[dict[str, Any]], sort: str, direction: str, keys: dict[str, str]
) -> list[dict[str, Any]]:
    field = keys.get(sort, "created_at")
    items = sorted(items, key=lambda r: (int(r[field]), r["id"]))
    return items if direction == "asc" else items[::-1]


def list_issues(emu: GitHub, req: Request, data: dict[str, Any]) -> Response:
    """``GET /repos/{owner}/{repo}/issues``: state, sort, direction, since, labels."""
    since = _since(req)
    if isinstance(since, Response):
        return since
    state = req.arg("state", "open")
    if state not in ("open", "closed", "all"):
        return _invalid("state")
    sort = req.arg("sort", "created") or "created"
    if sort not in ("created", "updated", "comments"):
        return _invalid("sort")
    wanted = {x for x in (req.arg("labels") or "").split(",") if x}
    items = [
        i
        for i in data["issues"].values()
        if (state == "all" or i["state"] == state)
        and (since is None or int(i["updated_at"]) >= since)
        and wanted <= set(i["labels"])
    ]
    if sort == "comments":
        items = sorted(items, key=lambda r: (r["comments"], r["id"]))
        items = items if req.arg("direction") == "asc" else items[::-1]
    else:
        keys = {"created": "created_at", "updated": "updated_at"}
        items = _sorted(items, sort, req.arg("direction", "desc") or "desc", keys)
    return _page(req, data, items, obj.issue, emu.base_path)


def list_pulls(emu: GitHub, req: Request, data: dict[str, Any]) -> Response:
    """``GET /repos/{owner}/{repo}/pulls``: state, sort, direction (no ``since``)."""
    state = req.arg("state", "open")
    sort = req.arg("sort", "created") or "created"
    if state not in ("open", "closed", "all") or sort not in (
        "created",
        "updated",
        "popularity",
        "long-running",
    ):
        return _invalid("sort" if state in ("open", "closed", "all") else "state")
    # Documented default: desc when sort is created or not given, otherwise asc.
    direction = req.arg("direction") or ("desc" if sort == "created" else "asc")
    items = [
        i
        for i in data["issues"].values()
        if i.get("pull") and (state == "all" or i["state"] == state)
    ]
    items = _sorted(items, sort, direction, {"created": "created_at", "updated": "updated_at"})
    return _page(req, data, items, obj.pull, emu.base_path)


def list_comments(emu: GitHub, req: Request, data: dict[str, Any]) -> Response:
    """``GET /repos/{owner}/{repo}/issues/comments``: sort, direction, since."""
    since = _since(req)
    if isinstance(since, Response):
        return since
    sort = req.arg("sort")
    items = [c for c in data["comments"].values() if since is None or int(c["updated_at"]) >= since]
    if sort is None:  # by id, ascending; direction is ignored without sort (documented)
        items = sorted(items, key=lambda c: c["id"])
    elif sort in ("created", "updated"):
        direction = req.arg("direction", "desc") or "desc"
        items = _sorted(items, sort, direction, {"created": "created_at", "updated": "updated_at"})
    else:
        return _invalid("sort")
    return _page(req, data, items, obj.comment, emu.base_path)


def _page(
    req: Request, data: dict[str, Any], items: list[dict[str, Any]], render: Render, base: str
) -> Response:
    """One page of ``items`` by ``per_page``/``page``, with GitHub's ``Link`` header."""
    try:
        per_page = min(max(int(req.arg("per_page", "30") or 30), 1), 100)
        page = max(int(req.arg("page", "1") or 1), 1)
    except ValueError:
        return _invalid("per_page")
    last = max((len(items) + per_page - 1) // per_page, 1)
    chunk = items[(page - 1) * per_page : page * per_page]
    api = req.origin + base
    body = [render(api, data["full"], item) for item in chunk]
    tail = (
        "issues/comments" if req.path.endswith("/issues/comments") else req.path.rsplit("/", 1)[-1]
    )
    target = f"{api}/repositories/{data['id']}/{tail}"
    params = {k: v[0] for k, v in req.query.items() if k != "page"}

    def link(n: int, rel: str) -> str:
        return f'<{target}?{urlencode({**params, "page": n})}>; rel="{rel}"'

    links = []
    if page > 1:
        links.append(link(min(page - 1, last), "prev"))
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links.append(link(1, "first"))
    headers = {"Link": ", ".join(links)} if links else {}
    return Response.json(body, 200, **headers)
