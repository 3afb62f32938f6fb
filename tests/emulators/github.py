"""A loopback emulator of GitHub's REST API: the repository issues, pull requests and issue
comments a connector reads and writes, GitHub's authentication, and its primary rate limit.

What it follows from GitHub's documentation (docs.github.com/rest):

- **Auth.** ``Authorization: Bearer TOKEN`` or ``token TOKEN`` (personal access tokens, OAuth
  tokens, installation tokens); a missing, unknown or expired one answers 401 ``Bad
  credentials``. A request without ``User-Agent`` is refused (403), as GitHub does.
- **GitHub Apps.** ``POST /app/installations/{id}/access_tokens`` with a JWT (RS256, ``iat``,
  ``exp`` at most 10 minutes ahead, ``iss`` the app's id or client id) signed by the app's key
  answers 201 with an installation token (``ghs_...``) and its ``expires_at``; the token works
  until then and is refused after.
- **Primary limit.** Each identity (token, installation) gets ``limit`` requests per ``window``
  seconds; every answer carries ``x-ratelimit-limit``, ``-remaining``, ``-used``, ``-reset``
  (UTC epoch seconds) and ``-resource``; past the limit it answers 403 (or 429) with
  ``x-ratelimit-remaining: 0`` until the reset. ``limit_exceeded`` in the stats counts those.
- **Listings.** ``per_page`` (default 30, at most 100) and ``page``; a ``Link`` header with
  ``next``/``last``/``first``/``prev`` whose URLs name the repository by id
  (``/repositories/{id}/issues?...``), as GitHub's do; issues take ``state``, ``sort``
  (created, updated, comments), ``direction`` and ``since`` (``updated_at`` at or after); the
  issues listing holds pull requests too (with a ``pull_request`` key). Pull requests have no
  ``since``; repository issue comments take ``sort``, ``direction`` and ``since``.
- **Writes.** Create an issue (201, ``Location``), comment (201), add labels (200, every label of
  the issue), update an issue (PATCH: ``state: closed`` closes it with a ``state_reason``);
  422 ``Validation Failed`` without a title or a body.
- **GHES.** ``base_path="/api/v3"`` serves everything under that prefix, as GitHub Enterprise
  Server does.

Errors to inject by class (``inject("NAME")``, ``NAME:SECONDS`` sets the wait): ``secondary``
(403 + ``retry-after``), ``secondary_429`` (429 + ``retry-after``), ``secondary_reset`` (403,
``x-ratelimit-remaining: 0`` and a reset time only), ``primary`` (403, the primary limit's
body and headers), ``server_error`` (502), ``unavailable`` (503), ``bad_credentials`` (401),
``forbidden`` (403, not a limit), ``not_found`` (404), ``validation`` (422).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from typing import Any

import jwt

from tests.emulators import github_objects as obj
from tests.emulators.common import Emulator, Request, Response, Route
from tests.emulators.github_errors import DOCS, LIMIT_DOCS, error, injected_answer, validation
from tests.emulators.github_listing import listing_routes

__all__ = ["DOCS", "GitHub", "error", "validation"]

NAME = r"[A-Za-z0-9_.-]+"


class GitHub(Emulator):
    """The emulator; ``tokens`` are the personal access (or OAuth) tokens it accepts."""

    name = "github"

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = ("ghp_emulator",),
        base_path: str = "",
        limit: int = 5000,
        window: float = 3600.0,
        exceeded_status: int = 403,
        apps: dict[str, str] | None = None,
        installations: dict[int, str] | None = None,
        token_ttl: float = 3600.0,
    ) -> None:
        """``apps`` maps an app id (or client id) to its public key (PEM); ``installations``
        maps an installation id to its app's id; ``token_ttl`` is the installation tokens' life."""
        self.base_path = base_path.rstrip("/")
        self.limit, self.window, self.exceeded_status = limit, window, exceeded_status
        self.apps = dict(apps or {})
        self.installations = dict(installations or {})
        self.token_ttl = token_ttl
        self.tokens: dict[str, tuple[str, float | None]] = {t: (f"pat:{t}", None) for t in tokens}
        self._windows: dict[str, tuple[int, int]] = {}
        self._data_lock = threading.RLock()
        self.repos: dict[str, dict[str, Any]] = {}
        super().__init__()

    # -- data ------------------------------------------------------------------------------

    def reset_state(self) -> None:
        with self._data_lock:
            self.repos.clear()
            self._windows.clear()

    def add_repo(self, owner: str, repo: str) -> dict[str, Any]:
        """The repository ``owner/repo`` (made empty when new)."""
        with self._data_lock:
            full = f"{owner}/{repo}"
            if full not in self.repos:
                self.repos[full] = {
                    "full": full,
                    "id": 1300192 + len(self.repos),
                    "issues": {},
                    "comments": {},
                    "next": 1,
                    "next_comment": 1,
                }
            return self.repos[full]

    def seed_issues(
        self,
        owner: str,
        repo: str,
        count: int,
        *,
        start: float = 1_303_479_228.0,
        step: float = 60.0,
        pulls_every: int = 0,
        state: str = "open",
    ) -> list[int]:
        """Add ``count`` issues updated ``step`` seconds apart from ``start`` (every
        ``pulls_every``-th one a pull request); returns their numbers."""
        numbers = []
        with self._data_lock:
            data = self.add_repo(owner, repo)
            for i in range(count):
                at = start + i * step
                is_pull = bool(pulls_every) and (i + 1) % pulls_every == 0
                numbers.append(self._new_issue(data, f"Found a bug #{i + 1}", at, pull=is_pull))
                if state == "closed":
                    data["issues"][numbers[-1]].update(state="closed", closed_at=at)
        return numbers

    def seed_comments(
        self, owner: str, repo: str, number: int, count: int, *, start: float, step: float = 60.0
    ) -> None:
        """Add ``count`` comments to issue ``number``, ``step`` seconds apart from ``start``."""
        with self._data_lock:
            data = self.add_repo(owner, repo)
            for i in range(count):
                self._new_comment(data, number, f"Me too ({i + 1})", start + i * step)

    def touch(self, owner: str, repo: str, number: int, at: float | None = None) -> None:
        """Update issue ``number`` now (or at ``at``): it moves to the end of an updated-sort."""
        with self._data_lock:
            self.repos[f"{owner}/{repo}"]["issues"][number]["updated_at"] = at or time.time()

    def issues(self, owner: str, repo: str) -> list[dict[str, Any]]:
        """The stored issue records (for assertions)."""
        with self._data_lock:
            return [dict(i) for i in self.repos[f"{owner}/{repo}"]["issues"].values()]

    def comments(self, owner: str, repo: str) -> list[dict[str, Any]]:
        """The stored comment records (for assertions)."""
        with self._data_lock:
            return [dict(c) for c in self.repos[f"{owner}/{repo}"]["comments"].values()]

    def _new_issue(self, data: dict[str, Any], title: str, at: float, **fields: Any) -> int:
        number = data["next"]
        data["next"] += 1
        data["issues"][number] = {
            "number": number,
            "id": data["id"] * 1000 + number,
            "title": title,
            "body": fields.pop("body", "I'm having a problem with this."),
            "state": "open",
            "labels": list(fields.pop("labels", [])),
            "created_at": at,
            "updated_at": at,
            "closed_at": None,
            "comments": 0,
            **fields,
        }
        return number

    def _new_comment(self, data: dict[str, Any], number: int, body: str, at: float) -> int:
        cid = data["id"] * 1000 + data["next_comment"]
        data["next_comment"] += 1
        data["comments"][cid] = {
            "id": cid,
            "issue": number,
            "body": body,
            "created_at": at,
            "updated_at": at,
        }
        issue = data["issues"][number]
        issue["comments"] += 1
        issue["updated_at"] = max(issue["updated_at"], at)
        return cid

    # -- routes ----------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        p = self.base_path
        repo = rf"{p}/repos/(?P<owner>{NAME})/(?P<repo>{NAME})"
        api = self._api
        return [
            *listing_routes(self, p, repo),
            Route("POST", rf"{repo}/issues", api(self.create_issue), "create_issue"),
            Route("GET", rf"{repo}/issues/(?P<number>\d+)", api(self.get_issue), "get_issue"),
            Route(
                "PATCH", rf"{repo}/issues/(?P<number>\d+)", api(self.update_issue), "update_issue"
            ),
            Route(
                "POST",
                rf"{repo}/issues/(?P<number>\d+)/comments",
                api(self.create_comment),
                "create_comment",
            ),
            Route(
                "POST", rf"{repo}/issues/(?P<number>\d+)/labels", api(self.add_labels), "add_labels"
            ),
            Route(
                "POST",
                rf"{p}/app/installations/(?P<installation>\d+)/access_tokens",
                self.access_token,
                "access_token",
            ),
        ]

    def not_found(self, req: Request) -> Response:
        return error(404, "Not Found")

    # -- auth and the primary limit ---------------------------------------------------------

    def _api(self, handler: Any) -> Any:
        """``handler`` behind GitHub's auth and primary limit, its answer with their headers."""

        def guarded(req: Request, **groups: str) -> Response:
            if not req.headers.get("user-agent"):
                return error(
                    403,
                    "Request forbidden by administrative rules. "
                    "Please make sure your request has a User-Agent header",
                )
            identity = self._identity(req)
            if identity is None:
                return error(401, "Bad credentials")
            allowed, headers = self._count(identity)
            if not allowed:
                with self.lock:
                    self.counters["limit_exceeded"] += 1
                    self.counters["rate_limited"] += 1 if self.exceeded_status != 429 else 0
                answer = error(
                    self.exceeded_status,
                    "API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
                    "for help, please include the request ID 0000:0000:0000000:0000000:00000000.",
                    LIMIT_DOCS + "#about-primary-rate-limits",
                )
            else:
                with self._data_lock:
                    answer = handler(req, **groups)
            answer.headers.update(headers)
            answer.headers["Content-Type"] = "application/json; charset=utf-8"
            answer.headers["x-github-api-version-selected"] = "2022-11-28"
            answer.headers["x-github-request-id"] = secrets.token_hex(8).upper()
            return answer

        return guarded

    def _identity(self, req: Request) -> str | None:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        known = self.tokens.get(token.strip())
        if known is None or (known[1] is not None and known[1] <= time.time()):
            return None
        return known[0]

    def _count(self, identity: str) -> tuple[bool, dict[str, str]]:
        """Count a request against ``identity``'s window: (allowed, the x-ratelimit-* headers).

        The reset is a whole epoch second (GitHub's header has no fraction), so a client that
        waits until it finds a fresh window."""
        now = time.time()
        with self.lock:
            reset, used = self._windows.get(identity, (0, 0))
            if now >= reset:
                reset, used = math.ceil(now + self.window), 0
            allowed = used < self.limit
            used += 1 if allowed else 0
            self._windows[identity] = (reset, used)
            if allowed and used == self.limit:  # this answer says the window is spent
                self.counters["windows_spent"] += 1
        return allowed, {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(self.limit - used, 0)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "core",
        }

    def access_token(self, req: Request, installation: str) -> Response:
        """``POST /app/installations/{installation_id}/access_tokens`` with the app's JWT."""
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error(401, "A JSON web token could not be decoded")
        try:
            issuer = str(jwt.decode(token, options={"verify_signature": False}).get("iss"))
            key = self.apps[issuer]
            claims = jwt.decode(
                token, key, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]}
            )
        except (jwt.PyJWTError, KeyError):
            return error(401, "A JSON web token could not be decoded")
        if claims["exp"] - time.time() > 600 + 30:
            return error(
                401,
                "'Expiration time' claim ('exp') is too far in the future",
            )
        app = self.installations.get(int(installation))
        if app is None or app != issuer:
            return error(404, "Not Found")
        value = "ghs_" + secrets.token_urlsafe(27)[:36]
        expires = time.time() + self.token_ttl
        with self.lock:
            self.tokens[value] = (f"installation:{installation}", expires)
            self.counters["installation_tokens"] += 1
        return Response.json(obj.installation_token(value, expires), 201)

    # -- writes ------------------------------------------------------------------------------

    def _repo(self, owner: str, repo: str) -> dict[str, Any] | None:
        return self.repos.get(f"{owner}/{repo}")

    def _api_base(self, req: Request) -> str:
        return req.origin + self.base_path

    def create_issue(self, req: Request, owner: str, repo: str) -> Response:
        data = self._repo(owner, repo)
        body = req.json()
        if data is None:
            return error(404, "Not Found")
        if not isinstance(body, dict) or not isinstance(body.get("title"), (str, int)):
            return validation("Issue", "title")
        labels = [x["name"] if isinstance(x, dict) else str(x) for x in body.get("labels") or []]
        number = self._new_issue(
            data, str(body["title"]), time.time(), body=body.get("body"), labels=labels
        )
        with self.lock:
            self.counters["created"] += 1
        answer = obj.issue(self._api_base(req), data["full"], data["issues"][number])
        return Response.json(answer, 201, Location=answer["url"])

    def get_issue(self, req: Request, owner: str, repo: str, number: str) -> Response:
        data = self._repo(owner, repo)
        if data is None or int(number) not in data["issues"]:
            return error(404, "Not Found")
        return Response.json(
            obj.issue(self._api_base(req), data["full"], data["issues"][int(number)])
        )

    def update_issue(self, req: Request, owner: str, repo: str, number: str) -> Response:
        data = self._repo(owner, repo)
        body = req.json()
        if data is None or int(number) not in data["issues"]:
            return error(404, "Not Found")
        if not isinstance(body, dict):
            return error(400, "Problems parsing JSON")
        issue = data["issues"][int(number)]
        state = body.get("state", issue["state"])
        if state not in ("open", "closed"):
            return validation("Issue", "state", "invalid")
        now = time.time()
        if state == "closed" and issue["state"] != "closed":
            issue.update(closed_at=now, state_reason=body.get("state_reason") or "completed")
        if state == "open" and issue["state"] == "closed":
            issue.update(closed_at=None, state_reason="reopened")
        for key in ("title", "body"):
            if key in body:
                issue[key] = body[key]
        issue.update(state=state, updated_at=now)
        return Response.json(obj.issue(self._api_base(req), data["full"], issue))

    def create_comment(self, req: Request, owner: str, repo: str, number: str) -> Response:
        data = self._repo(owner, repo)
        body = req.json()
        if data is None or int(number) not in data["issues"]:
            return error(404, "Not Found")
        if not isinstance(body, dict) or not isinstance(body.get("body"), str):
            return validation("IssueComment", "body")
        cid = self._new_comment(data, int(number), body["body"], time.time())
        with self.lock:
            self.counters["created"] += 1
        answer = obj.comment(self._api_base(req), data["full"], data["comments"][cid])
        return Response.json(answer, 201, Location=answer["url"])

    def add_labels(self, req: Request, owner: str, repo: str, number: str) -> Response:
        data = self._repo(owner, repo)
        body = req.json()
        if data is None or int(number) not in data["issues"]:
            return error(404, "Not Found")
        names = body.get("labels") if isinstance(body, dict) else body
        if not isinstance(names, list) or not names:
            return validation("Label", "labels")
        issue = data["issues"][int(number)]
        for name in names:
            name = name["name"] if isinstance(name, dict) else str(name)
            if name not in issue["labels"]:
                issue["labels"].append(name)
        issue["updated_at"] = time.time()
        api = self._api_base(req)
        labels = [
            obj.label(api, data["full"], n, 208045946 + i) for i, n in enumerate(issue["labels"])
        ]
        return Response.json(labels)

    # -- injected errors -----------------------------------------------------------------------

    def injected(self, kind: str, req: Request) -> Response:
        answer = injected_answer(kind, self.limit)
        return answer if answer is not None else super().injected(kind, req)
