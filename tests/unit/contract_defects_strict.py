"""More defects the contract suite must catch (see ``contract_defects``): credentials, the
whole request, keys in records, every logger, derived secrets, learning budgets, pagination and
order left unchecked, waits left unstated. ``STRICT`` continues the module ``BROKEN`` starts
(its names: ``RECORDINGS``, ``replaced``, the sandbox connector and the suite)."""

from __future__ import annotations

import textwrap

__all__ = ["MUST_FAIL", "STRICT"]

STRICT = textwrap.dedent(
    """
    class NoCredentials(SandboxConnector):
        def auth(self):
            return None


    _OPEN = dict(RECORDINGS.data)
    _OPEN["auth"] = [{{**e, "expect": {{}}}} for e in RECORDINGS.entries("auth")]


    class TestNoCredentials(ConnectorContract):
        connector = NoCredentials
        recordings = recordings(_OPEN)


    class ExtraQuery(SandboxConnector):
        def request(self, method, path, **kwargs):
            kwargs["params"] = {{**(kwargs.get("params") or {{}}), "trace": "1"}}
            return super().request(method, path, **kwargs)


    class TestExtraQuery(ConnectorContract):
        connector = ExtraQuery
        recordings = RECORDINGS


    class QuietLogger(SandboxConnector):
        def parse_action(self, action, response):
            quiet = logging.getLogger("quiet.connector")
            quiet.setLevel(logging.WARNING)
            quiet.propagate = False
            quiet.debug("sent with %s", self.secret("api_key"))
            return super().parse_action(action, response)


    class TestQuietLogger(ConnectorContract):
        connector = QuietLogger
        recordings = RECORDINGS


    class SecretDeepInCause(SandboxConnector):
        def request(self, method, path, **kwargs):
            try:
                return super().request(method, path, **kwargs)
            except FatalError as exc:
                try:
                    try:
                        raise KeyError(self.secret("api_key"))
                    except KeyError as inner:
                        raise ValueError("wrapped") from inner
                except ValueError as outer:
                    raise FatalError(str(exc), connector=self.name) from outer


    class TestSecretDeepInCause(ConnectorContract):
        connector = SecretDeepInCause
        recordings = RECORDINGS


    class WrongReplicationKey(SandboxConnector):
        streams = replaced("items", replication_key="updated")


    class TestWrongReplicationKey(ConnectorContract):
        connector = WrongReplicationKey
        recordings = RECORDINGS


    _RATE = dict(RECORDINGS.data)
    _RATE["rate_limit"] = [
        {{**e, "expect": {{**e["expect"], "rate": 100}}}} for e in RECORDINGS.entries("rate_limit")
    ]


    class TestRateLearned(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_RATE)


    # A refusal (429) as a rate-limit answer: the request path pauses the budget for its wait.
    _REFUSAL = dict(RECORDINGS.data)
    _REFUSAL["rate_limit"] = [
        {{
            "name": "refused",
            "target": e["target"],
            "response": e["response"],
            "expect": {{"retry_after": 2, "pause": 2, "budget": "sandbox:{{scope}}"}},
        }}
        for e in RECORDINGS.entries("errors")
        if e["name"] == "rate limited"
    ]


    class TestRefusalPauses(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_REFUSAL)


    _WRONG_PAUSE = dict(_REFUSAL)
    _WRONG_PAUSE["rate_limit"] = [
        {{**e, "expect": {{**e["expect"], "pause": 9}}}} for e in _REFUSAL["rate_limit"]
    ]


    class TestWrongPause(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_WRONG_PAUSE)


    class NoWindow(SandboxConnector):
        rate_limit_window = None


    class TestRateUnlearned(ConnectorContract):
        connector = NoWindow
        recordings = recordings(_RATE)


    _ONE_PAGE = dict(RECORDINGS.data)
    _ONE_PAGE["streams"] = [
        {{**e, "pages": e["pages"][-1:]}} if e["stream"] == "items" else e
        for e in RECORDINGS.entries("streams")
    ]


    class TestOnePageWalk(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_ONE_PAGE)


    def _same_time(value):
        if isinstance(value, dict):
            return {{k: "2026-11-26T00:00:01.000000Z" if k == "updated_at" else _same_time(v)
                    for k, v in value.items()}}
        return [_same_time(v) for v in value] if isinstance(value, list) else value


    _SAME = dict(RECORDINGS.data)
    _SAME["streams"] = [
        _same_time(e) if e["stream"] == "items" else e for e in RECORDINGS.entries("streams")
    ]


    class TestOrderUnchecked(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_SAME)


    class RefusesBeforeSending(SandboxConnector):
        def perform_action(self, action, params, *, idempotency_key=None):
            if params.get("text") == "hi":
                raise FatalError("refused here", connector=self.name)
            return super().perform_action(action, params, idempotency_key=idempotency_key)


    class TestRefusesBeforeSending(ConnectorContract):
        connector = RefusesBeforeSending
        recordings = RECORDINGS


    class LogsTheHeader(SandboxConnector):
        def parse_action(self, action, response):
            logging.getLogger("broken").debug("sent %s", response.request.headers["Authorization"])
            return super().parse_action(action, response)


    class TestLogsTheHeader(ConnectorContract):
        connector = LogsTheHeader
        recordings = RECORDINGS


    _NO_WAIT = dict(RECORDINGS.data)
    _NO_WAIT["errors"] = [
        {{k: v for k, v in e.items() if k != "wait"}} for e in RECORDINGS.entries("errors")
    ]


    class TestWaitUnstated(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_NO_WAIT)


    _NO_LIMITS = dict(RECORDINGS.data)
    _NO_LIMITS["rate_limit"] = []
    _NO_LIMITS["errors"] = [
        e for e in RECORDINGS.entries("errors") if e["expect"] != "rate_limited"
    ]


    class TestNoLimits(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_NO_LIMITS)


    class PostsPages(SandboxConnector):
        def request(self, method, path, **kwargs):
            if method == "GET" and kwargs.get("params", {{}}).get("cursor"):
                method = "POST"
            return super().request(method, path, **kwargs)


    class TestPostsPages(ConnectorContract):
        connector = PostsPages
        recordings = RECORDINGS


    _NO_EXPECT = dict(RECORDINGS.data)
    _NO_EXPECT["errors"] = [
        {{k: v for k, v in e.items() if k != "expect"}} for e in RECORDINGS.entries("errors")
    ]


    class TestErrorExpectsNothing(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_NO_EXPECT)


    _LESS = dict(RECORDINGS.data)
    _LESS["auth"] = [e for e in RECORDINGS.entries("auth") if e["kind"] != "basic"]
    _LESS["actions"] = [e for e in RECORDINGS.entries("actions") if e["action"] != "get_message"]


    class TestUnrecorded(ConnectorContract):
        connector = SandboxConnector
        recordings = recordings(_LESS)
    """
)

MUST_FAIL: dict[str, list[str]] = {
    "TestUnrecorded": ["test_metadata_complete", "test_every_action_and_stream_recorded"],
    "TestNoCredentials": ["test_auth_applied[api_key]", "test_auth_applied[basic]"],
    "TestExtraQuery": ["test_action_request[create_message_unkeyed]"],
    "TestQuietLogger": ["test_no_secret_leaks[actions:"],
    "TestSecretDeepInCause": ["test_no_secret_leaks[errors:bad"],
    "TestWrongReplicationKey": ["test_stream_pages[items]"],
    "TestRateUnlearned": ["test_rate_limit_headers[limit headers]"],
    "TestWrongPause": ["test_rate_limit_headers[refused]"],
    "TestOnePageWalk": ["test_stream_stops_on_cycle[items]"],
    "TestOrderUnchecked": ["test_stream_pages[items]"],
    "TestRefusesBeforeSending": ["test_error_classified[bad request]"],
    "TestNoLimits": ["test_every_action_and_stream_recorded"],
    # An error entry that expects nothing checks nothing: it fails.
    "TestErrorExpectsNothing": ["test_error_classified[bad request]"],
    # A later page's method is the first page's unless its recording says otherwise.
    "TestPostsPages": ["test_stream_pages[items]"],
    # An error that carries a wait must have it stated, or a wrong one would pass.
    "TestWaitUnstated": ["test_error_classified[rate limited]", "test_error_classified[unavail"],
    # Basic auth's header is the secrets' base64: a leak though no secret appears as written.
    "TestLogsTheHeader": ["test_no_secret_leaks[auth:basic]"],
}
