"""GitHub REST objects in the shapes GitHub documents (the examples of "Issues", "Issue comments"
and "Pulls" in docs.github.com/rest), built around the emulator's own data.

The field sets follow the documented examples (``simple-user``, ``label``, ``issue``,
``issue-comment``, ``pull-request-simple``); the URLs point at the emulator (GitHub's point at
``https://api.github.com``), so a client that follows one stays on the emulator.
"""

from __future__ import annotations

import base64
import time
from typing import Any

__all__ = ["comment", "installation_token", "iso", "issue", "label", "pull", "user"]


def iso(epoch: float) -> str:
    """GitHub's timestamps: ISO 8601 in UTC, to the second (``2011-04-22T13:33:48Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode().rstrip("=")


def user(api: str, login: str = "octocat", uid: int = 1) -> dict[str, Any]:
    """A ``simple-user``."""
    base = f"{api}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": _node_id("User", uid),
        "avatar_url": "https://github.com/images/error/octocat_happy.gif",
        "gravatar_id": "",
        "url": base,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": "User",
        "site_admin": False,
    }


def label(api: str, full: str, name: str, lid: int) -> dict[str, Any]:
    """A ``label`` of repository ``full`` (``owner/repo``)."""
    return {
        "id": lid,
        "node_id": _node_id("Label", lid),
        "url": f"{api}/repos/{full}/labels/{name}",
        "name": name,
        "description": "Something isn't working" if name == "bug" else None,
        "color": "f29513",
        "default": name == "bug",
    }


def issue(api: str, full: str, data: dict[str, Any]) -> dict[str, Any]:
    """An ``issue`` from the emulator's record ``data`` (number, id, title, body, state, ...)."""
    n = data["number"]
    base = f"{api}/repos/{full}/issues/{n}"
    out: dict[str, Any] = {
        "id": data["id"],
        "node_id": _node_id("Issue", data["id"]),
        "url": base,
        "repository_url": f"{api}/repos/{full}",
        "labels_url": f"{base}/labels{{/name}}",
        "comments_url": f"{base}/comments",
        "events_url": f"{base}/events",
        "html_url": f"https://github.com/{full}/issues/{n}",
        "number": n,
        "state": data["state"],
        "state_reason": data.get("state_reason"),
        "title": data["title"],
        "body": data.get("body"),
        "user": user(api, data.get("login", "octocat")),
        "labels": [label(api, full, name, 208045946 + i) for i, name in enumerate(data["labels"])],
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "locked": False,
        "active_lock_reason": None,
        "comments": data.get("comments", 0),
        "closed_at": iso(data["closed_at"]) if data.get("closed_at") else None,
        "created_at": iso(data["created_at"]),
        "updated_at": iso(data["updated_at"]),
        "closed_by": user(api) if data["state"] == "closed" else None,
        "author_association": "COLLABORATOR",
    }
    if data.get("pull"):  # GitHub lists every pull request as an issue too, marked so
        pulls = f"{api}/repos/{full}/pulls/{n}"
        out["pull_request"] = {
            "url": pulls,
            "html_url": f"https://github.com/{full}/pull/{n}",
            "diff_url": f"https://github.com/{full}/pull/{n}.diff",
            "patch_url": f"https://github.com/{full}/pull/{n}.patch",
            "merged_at": None,
        }
    return out


def pull(api: str, full: str, data: dict[str, Any]) -> dict[str, Any]:
    """A ``pull-request-simple`` (the items of ``GET /repos/{owner}/{repo}/pulls``)."""
    n = data["number"]
    base = f"{api}/repos/{full}/pulls/{n}"
    owner = full.split("/")[0]
    head_sha = f"{data['id']:040x}"[-40:]

    def ref(name: str) -> dict[str, Any]:
        return {
            "label": f"{owner}:{name}",
            "ref": name,
            "sha": head_sha,
            "user": user(api, owner),
            "repo": None,
        }

    return {
        "url": base,
        "id": data["id"],
        "node_id": _node_id("PullRequest", data["id"]),
        "html_url": f"https://github.com/{full}/pull/{n}",
        "diff_url": f"https://github.com/{full}/pull/{n}.diff",
        "patch_url": f"https://github.com/{full}/pull/{n}.patch",
        "issue_url": f"{api}/repos/{full}/issues/{n}",
        "commits_url": f"{base}/commits",
        "review_comments_url": f"{base}/comments",
        "review_comment_url": f"{api}/repos/{full}/pulls/comments{{/number}}",
        "comments_url": f"{api}/repos/{full}/issues/{n}/comments",
        "statuses_url": f"{api}/repos/{full}/statuses/{head_sha}",
        "number": n,
        "state": data["state"],
        "locked": False,
        "title": data["title"],
        "user": user(api, data.get("login", "octocat")),
        "body": data.get("body"),
        "labels": [label(api, full, name, 208045946 + i) for i, name in enumerate(data["labels"])],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": iso(data["created_at"]),
        "updated_at": iso(data["updated_at"]),
        "closed_at": iso(data["closed_at"]) if data.get("closed_at") else None,
        "merged_at": None,
        "merge_commit_sha": None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": ref(f"topic-{n}"),
        "base": ref("main"),
        "_links": {
            "self": {"href": base},
            "html": {"href": f"https://github.com/{full}/pull/{n}"},
            "issue": {"href": f"{api}/repos/{full}/issues/{n}"},
            "comments": {"href": f"{api}/repos/{full}/issues/{n}/comments"},
        },
        "author_association": "OWNER",
        "auto_merge": None,
        "draft": False,
    }


def comment(api: str, full: str, data: dict[str, Any]) -> dict[str, Any]:
    """An ``issue-comment``."""
    cid = data["id"]
    return {
        "id": cid,
        "node_id": _node_id("IssueComment", cid),
        "url": f"{api}/repos/{full}/issues/comments/{cid}",
        "html_url": f"https://github.com/{full}/issues/{data['issue']}#issuecomment-{cid}",
        "body": data["body"],
        "user": user(api, data.get("login", "octocat")),
        "created_at": iso(data["created_at"]),
        "updated_at": iso(data["updated_at"]),
        "issue_url": f"{api}/repos/{full}/issues/{data['issue']}",
        "author_association": "COLLABORATOR",
    }


def installation_token(token: str, expires_at: float) -> dict[str, Any]:
    """The answer of ``POST /app/installations/{installation_id}/access_tokens`` (201)."""
    return {
        "token": token,
        "expires_at": iso(expires_at),
        "permissions": {"issues": "write", "pull_requests": "read", "metadata": "read"},
        "repository_selection": "all",
    }
