"""Microsoft Teams through Microsoft Graph, and the Microsoft identity platform, on loopback.

Everything here follows Microsoft's documentation (Graph v1.0 reference pages "Send chatMessage
in a channel", "Send replies to a message in a channel", "List teams", "List joinedTeams",
"List channels", "chatMessage: delta", "Microsoft Graph throttling guidance", "Microsoft Graph
error responses"); the documented example ids are the seed data. One emulator serves both hosts:
point the connector's ``base_url`` at ``URL/v1.0`` and its ``login_url`` at ``URL``.

- Graph answers need ``Authorization: Bearer`` with a token from the token endpoint; unknown or
  expired: 401 ``InvalidAuthenticationToken``.
- Posting a message or a reply with an app-only token (client credentials) answers what Graph
  answers: 401 ``Unauthorized`` "Message POST is allowed in application-only context only for
  import purposes" (application permissions are for migration only): NOT a token to renew.
- Lists: ``value`` plus an absolute ``@odata.nextLink`` on this emulator's origin (``$top``,
  ``$skiptoken``). Channel messages delta: pages of ``$top`` (at most 50) oldest first, an
  ``@odata.nextLink`` with a ``$skiptoken``, then an ``@odata.deltaLink`` with a
  ``$deltatoken`` that, later, returns only the messages created or changed since.
- Throttling from the documented Teams limits (per app per tenant, requests per second: POST
  channel message 2, GET channel message 5, GET team/channel 60, joinedTeams 30; and 4 per
  second on one team or channel): 429 ``TooManyRequests`` with ``Retry-After`` (seconds until
  the window resets). Graph sends no rate-limit headers on successful answers.
- Injected error kinds: ``throttled`` (429), ``unavailable`` (503 + Retry-After),
  ``unauthorized`` (401 InvalidAuthenticationToken), ``forbidden`` (403), ``not_found`` (404),
  ``server_error`` (500), ``gateway_timeout`` (504), ``drop``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
import uuid
from typing import Any

from tests.emulators.common import Emulator, Limiter, Request, Response, Route
from tests.emulators.microsoft_identity import Grant, IdentityPlatform

__all__ = ["CHANNEL_ID", "TEAM_ID", "TENANT_ID", "TeamsEmulator"]

# The ids of Microsoft's documented examples.
TENANT_ID = "2432b57b-0abd-43db-aa7b-16eadd115d34"
TEAM_ID = "fbe2bf47-16c8-47cf-b4a5-4b9b187c508b"
CHANNEL_ID = "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2"
USER = {
    "@odata.type": "#microsoft.graph.teamworkUserIdentity",
    "id": "8ea0e38b-efb3-4757-924a-5f94061cf8c2",
    "displayName": "Robin Kline",
    "userIdentityType": "aadUser",
    "tenantId": "e61ef81e-8bd8-476a-92e8-4a62f8426fca",
}
#: Documented Microsoft Teams service limits, requests per second per app per tenant.
LIMITS = {"post_message": 2, "get_message": 5, "get_team_channel": 60, "joined_teams": 30}
#: "A maximum of 4 requests per second per app can be issued on a given team or channel."
PER_TEAM_OR_CHANNEL = 4
DELTA_TOP_MAX = 50
_ID = r"(?P<{}>[^/]+)"
_CHANNEL = "/v1.0/teams/" + _ID.format("team") + "/channels/" + _ID.format("channel")
_CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8"


class TeamsEmulator(Emulator):
    """Graph's Teams endpoints plus login.microsoftonline.com's OAuth endpoints."""

    name = "teams"

    def __init__(self, *, limits: dict[str, int] | None = None, seed: bool = True) -> None:
        self.identity = IdentityPlatform(tenant_id=TENANT_ID)
        self.limits = {**LIMITS, **(limits or {})}
        self.per_team_or_channel = self.limits.pop("per_team_or_channel", PER_TEAM_OR_CHANNEL)
        self._limiters = {k: Limiter(v, 1.0) for k, v in self.limits.items()}
        self._scoped = Limiter(self.per_team_or_channel, 1.0)
        self.seed = seed
        super().__init__()
        self.reset_state()

    # -- data ------------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Forget teams, channels and messages (and seed the documented example's)."""
        self.teams: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, list[dict[str, Any]]] = {}
        self.messages: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.seq = 0
        self.delta_generation = 0
        self._last_ms = 0
        if self.seed:
            self.add_team(
                "Contoso Team",
                "This is a Contoso team, used to showcase the range of properties supported "
                "by this API",
                team_id=TEAM_ID,
            )
            self.add_channel(TEAM_ID, "General", channel_id=CHANNEL_ID)

    def add_team(self, name: str, description: str = "", *, team_id: str | None = None) -> str:
        """A team; returns its id."""
        team_id = team_id or str(uuid.uuid4())
        with self.lock:
            self.teams[team_id] = {"id": team_id, "displayName": name, "description": description}
            self.channels.setdefault(team_id, [])
        return team_id

    def add_channel(self, team_id: str, name: str, *, channel_id: str | None = None) -> str:
        """A standard channel of ``team_id``; returns its id."""
        channel_id = channel_id or f"19:{uuid.uuid4().hex}@thread.tacv2"
        with self.lock:
            self.channels[team_id].append(
                {
                    "id": channel_id,
                    "createdDateTime": _now_iso(),
                    "displayName": name,
                    "description": f"{name} channel",
                    "email": "",
                    "webUrl": f"https://teams.microsoft.com/l/channel/{channel_id}/{name}"
                    f"?groupId={team_id}&tenantId={TENANT_ID}",
                    "membershipType": "standard",
                }
            )
            self.messages.setdefault((team_id, channel_id), {})
        return channel_id

    def add_message(
        self, team_id: str, channel_id: str, text: str, *, reply_to: str | None = None
    ) -> dict[str, Any]:
        """A message posted in a channel (by the documented example's user)."""
        with self.lock:
            now_ms = max(int(time.time() * 1000), self._last_ms + 1)
            self._last_ms = now_ms
            message_id = str(now_ms)
            stamp = _iso_ms(now_ms)
            parent = reply_to or message_id
            message = {
                "@odata.type": "#microsoft.graph.chatMessage",
                "id": message_id,
                "replyToId": reply_to,
                "etag": message_id,
                "messageType": "message",
                "createdDateTime": stamp,
                "lastModifiedDateTime": stamp,
                "lastEditedDateTime": None,
                "deletedDateTime": None,
                "subject": None,
                "summary": None,
                "chatId": None,
                "importance": "normal",
                "locale": "en-us",
                "webUrl": f"https://teams.microsoft.com/l/message/{channel_id}/{message_id}"
                f"?groupId={team_id}&tenantId={TENANT_ID}&createdTime={message_id}"
                f"&parentMessageId={parent}",
                "policyViolation": None,
                "eventDetail": None,
                "from": {"application": None, "device": None, "user": dict(USER)},
                "body": {"contentType": "text", "content": text},
                "channelIdentity": {"teamId": team_id, "channelId": channel_id},
                "attachments": [],
                "mentions": [],
                "reactions": [],
                "messageHistory": [],
            }
            if reply_to is None:
                self._touch(message)
                self.messages[(team_id, channel_id)][message_id] = message
            self.counters["created"] += 1
            return dict(message)

    def edit_message(self, team_id: str, channel_id: str, message_id: str, text: str) -> None:
        """Change a message's text: it shows up in the next delta round."""
        with self.lock:
            message = self.messages[(team_id, channel_id)][message_id]
            message["body"] = {"contentType": "text", "content": text}
            message["lastEditedDateTime"] = message["lastModifiedDateTime"] = _now_iso()
            self._touch(message)

    def expire_delta_tokens(self) -> None:
        """Every delta and skip token issued so far is refused (410, ``resyncRequired``)."""
        with self.lock:
            self.delta_generation += 1

    def _touch(self, message: dict[str, Any]) -> None:
        self.seq += 1
        message["_seq"] = self.seq

    # -- routes ----------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Login endpoints (tenant in the path) and Graph v1.0 Teams endpoints."""
        tenant = _ID.format("tenant")
        return [
            Route("GET", f"/{tenant}/oauth2/v2.0/authorize", self.identity.authorize, "authorize"),
            Route("POST", f"/{tenant}/oauth2/v2.0/token", self.identity.token, "token"),
            Route("GET", "/v1.0/teams", self._graph(self.list_teams, "get_team_channel"),
                  "list_teams"),
            Route("GET", "/v1.0/me/joinedTeams", self._graph(self.joined_teams, "joined_teams"),
                  "joined_teams"),
            Route("GET", "/v1.0/users/" + _ID.format("user") + "/joinedTeams",
                  self._graph(self.joined_teams, "joined_teams"), "joined_teams"),
            Route("GET", "/v1.0/teams/" + _ID.format("team") + "/channels",
                  self._graph(self.list_channels, "get_team_channel"), "list_channels"),
            Route("GET", _CHANNEL + "/messages/delta",
                  self._graph(self.messages_delta, "get_message"), "messages_delta"),
            Route("POST", _CHANNEL + "/messages", self._graph(self.send_message, "post_message"),
                  "send_message"),
            Route("POST", _CHANNEL + "/messages/" + _ID.format("message") + "/replies",
                  self._graph(self.send_reply, "post_message"), "send_reply"),
        ]  # fmt: skip

    def _graph(self, handler: Any, limit: str) -> Any:
        """Wrap a Graph handler: bearer token, then the documented limits, then the answer."""

        def serve(req: Request, **groups: str) -> Response:
            token = req.bearer()
            grant = self.identity.grant_for(token)
            if grant is None:
                message = (
                    "Access token is empty."
                    if not token
                    else "Access token has expired or is not yet valid."
                )
                return graph_error(401, "InvalidAuthenticationToken", message)
            wait = self._throttle(grant, limit, groups)
            if wait is not None:
                return graph_error(
                    429, "TooManyRequests", "Please retry again later.", retry_after=wait
                )
            response = handler(req, grant, **groups)
            response.headers.setdefault("Content-Type", _CONTENT_TYPE)
            response.headers.setdefault("request-id", str(uuid.uuid4()))
            return response

        return serve

    def _throttle(self, grant: Grant, limit: str, groups: dict[str, str]) -> int | None:
        app = f"{grant.client_id}:{grant.tenant}"
        allowed, _, reset = self._limiters[limit].hit(app)
        if allowed and "team" in groups:
            scope = groups.get("channel") or groups["team"]
            allowed, _, reset = self._scoped.hit(f"{app}:{scope}")
        return None if allowed else max(1, math.ceil(reset))

    # -- Graph handlers --------------------------------------------------------------------

    def list_teams(self, req: Request, grant: Grant) -> Response:
        """GET /teams: every team of the organisation, ``$top`` and ``$skiptoken`` pages."""
        with self.lock:
            teams = list(self.teams.values())
        return self._paged(req, teams, "teams", "/v1.0/teams")

    def joined_teams(self, req: Request, grant: Grant, user: str | None = None) -> Response:
        """GET /me/joinedTeams (delegated only) or /users/{id}/joinedTeams."""
        if user is None and grant.app_only:
            return graph_error(
                400, "BadRequest", "/me request is only valid with delegated authentication flow."
            )
        with self.lock:
            teams = [dict(t) for t in self.teams.values()]
        return Response.json({"value": teams})

    def list_channels(self, req: Request, grant: Grant, team: str) -> Response:
        """GET /teams/{id}/channels: all channels in one answer (no paging documented)."""
        with self.lock:
            channels = self.channels.get(team)
            listed = [dict(c) for c in channels] if channels is not None else None
        if listed is None:
            return graph_error(404, "NotFound", f"No team found with Group Id {team}")
        context = f"{req.origin}/v1.0/$metadata#teams('{team}')/channels"
        return Response.json({"@odata.context": context, "@odata.count": len(listed),
                              "value": listed})  # fmt: skip

    def send_message(self, req: Request, grant: Grant, team: str, channel: str) -> Response:
        """POST /teams/{team}/channels/{channel}/messages: 201 and the chatMessage."""
        return self._post(req, grant, team, channel, None)

    def send_reply(
        self, req: Request, grant: Grant, team: str, channel: str, message: str
    ) -> Response:
        """POST .../messages/{id}/replies: 201 and the reply."""
        return self._post(req, grant, team, channel, message)

    def _post(
        self, req: Request, grant: Grant, team: str, channel: str, reply_to: str | None
    ) -> Response:
        if grant.app_only:
            return graph_error(
                401,
                "Unauthorized",
                "Message POST is allowed in application-only context only for import purposes. "
                "Refer to https://docs.microsoft.com/microsoftteams/platform/graph-api/"
                "import-messages/import-external-messages-to-teams for more details.",
            )
        with self.lock:
            messages = self.messages.get((team, channel))
            known = messages is not None and (reply_to is None or reply_to in messages)
        if not known:
            return graph_error(404, "NotFound", "Resource not found.")
        payload = req.json()
        body = payload.get("body") if isinstance(payload, dict) else None
        if not isinstance(body, dict) or not body.get("content"):
            return graph_error(400, "BadRequest", "Message body cannot be empty.")
        created = self.add_message(team, channel, str(body["content"]), reply_to=reply_to)
        created["body"] = {"contentType": body.get("contentType", "text"),
                           "content": body["content"]}  # fmt: skip
        created.pop("_seq", None)
        kind = f"messages('{reply_to}')/replies" if reply_to else "messages"
        created = {
            "@odata.context": f"{req.origin}/v1.0/$metadata#teams('{team}')/channels"
            f"('{channel}')/{kind}/$entity",
            **created,
        }
        return Response.json(created, 201)

    def messages_delta(self, req: Request, grant: Grant, team: str, channel: str) -> Response:
        """GET .../messages/delta: a round of pages, then a deltaLink for the next round."""
        with self.lock:
            messages = self.messages.get((team, channel))
            if messages is None:
                return graph_error(404, "NotFound", "Resource not found.")
            skip, delta = req.arg("$skiptoken"), req.arg("$deltatoken")
            try:
                top = min(int(req.arg("$top") or 20), DELTA_TOP_MAX)
            except ValueError:
                return graph_error(400, "BadRequest", "Invalid value for $top.")
            if skip or delta:
                state = _decode(skip or delta or "")
                if state is None or state.get("k") != [team, channel]:
                    return graph_error(400, "BadRequest", "The token is not valid.")
                if state["g"] != self.delta_generation:
                    return graph_error(410, "resyncRequired", "The delta token is no longer "
                                       "valid; the app must reset the sync state.")  # fmt: skip
                after, top = state["a"], state["t"]
                upto = state["u"] if skip else self.seq
                offset = state["o"] if skip else 0
            else:
                after, upto, offset = 0, self.seq, 0
            changed = sorted(
                (m for m in messages.values() if after < m["_seq"] <= upto),
                key=lambda m: m["_seq"],
            )
            page = [
                {k: v for k, v in m.items() if k != "_seq"} for m in changed[offset : offset + top]
            ]
        base = f"{req.origin}/v1.0/teams/{team}/channels/{channel}/messages/delta"
        body: dict[str, Any] = {
            "@odata.context": f"{req.origin}/v1.0/$metadata#Collection(chatMessage)"
        }
        common = {"k": [team, channel], "g": self.delta_generation, "t": top}
        if offset + top < len(changed):
            token = _encode({**common, "a": after, "u": upto, "o": offset + top})
            body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
        else:
            body["@odata.deltaLink"] = f"{base}?$deltatoken={_encode({**common, 'a': upto})}"
        body["value"] = page
        return Response.json(body)

    def _paged(self, req: Request, items: list[dict[str, Any]], what: str, path: str) -> Response:
        top_text, skip_text = req.arg("$top") or "100", req.arg("$skiptoken") or "0"
        if not (top_text.isdigit() and skip_text.isdigit()) or int(top_text) < 1:
            return graph_error(400, "BadRequest", "Invalid paging parameters.")
        top, offset = int(top_text), int(skip_text)
        body: dict[str, Any] = {"@odata.context": f"{req.origin}/v1.0/$metadata#{what}"}
        if offset + top < len(items):
            body["@odata.nextLink"] = f"{req.origin}{path}?$top={top}&$skiptoken={offset + top}"
        body["value"] = [dict(i) for i in items[offset : offset + top]]
        return Response.json(body)

    # -- errors ----------------------------------------------------------------------------

    def injected(self, kind: str, req: Request) -> Response:
        """The documented Graph answer of each error class."""
        if kind == "throttled":
            return graph_error(429, "TooManyRequests", "Please retry again later.", retry_after=2)
        if kind == "unavailable":
            return graph_error(503, "serviceNotAvailable", "The service is not available. "
                               "Try the request again after a delay.", retry_after=2)  # fmt: skip
        simple = {
            "unauthorized": (401, "InvalidAuthenticationToken",
                             "Access token has expired or is not yet valid."),
            "forbidden": (403, "Forbidden", "Forbidden"),
            "not_found": (404, "NotFound", "Resource not found."),
            "server_error": (500, "InternalServerError", "An internal server error occurred."),
            "gateway_timeout": (504, "GatewayTimeout", "The gateway timed out."),
        }  # fmt: skip
        if kind not in simple:
            return super().injected(kind, req)
        return graph_error(*simple[kind])

    def not_found(self, req: Request) -> Response:
        """Graph's answer to an unknown segment."""
        return graph_error(400, "BadRequest", f"Resource not found for the segment '{req.path}'.")


def graph_error(
    status: int, code: str, message: str, *, retry_after: int | None = None
) -> Response:
    """Graph's documented error body ``{"error": {"code", "message", "innerError"}}``."""
    request_id = str(uuid.uuid4())
    inner: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "request-id": request_id,
        "client-request-id": request_id,
    }
    if status == 429:
        inner.update({"code": "429", "message": "Please retry after", "status": "429"})
    headers = {"Content-Type": "application/json", "request-id": request_id}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return Response(status, body, headers)


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any] | None:
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        return None
    return state if isinstance(state, dict) and {"k", "g", "a", "t"} <= set(state) else None


def _iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _now_iso() -> str:
    return _iso_ms(int(time.time() * 1000))
