"""The defects the contract suite must catch: sandbox connectors (and recordings) broken one way
each, as the source of a pytest module run in a subprocess (``BROKEN``, formatted with the
sandbox recordings' path), and the tests each must fail (``MUST_FAIL``)."""

from __future__ import annotations

import textwrap

__all__ = ["BROKEN", "MUST_FAIL"]

BROKEN = textwrap.dedent(
    """
    from __future__ import annotations

    import dataclasses
    import logging
    import random

    import yaml

    from spark_integrations.connectors.actions import Action
    from spark_integrations.connectors.pagination import CursorPaginator
    from spark_integrations.connectors.sandbox import SandboxConnector
    from spark_integrations.errors import FatalError, RetriableError
    from spark_integrations.testing import ConnectorContract, recordings

    RECORDINGS = recordings(r"{recordings}")


    def replaced(stream_name, **changes):
        return tuple(
            dataclasses.replace(s, **changes) if s.name == stream_name else s
            for s in SandboxConnector.streams
        )


    class TestGood(ConnectorContract):
        connector = SandboxConnector
        recordings = RECORDINGS


    class WrongPath(SandboxConnector):
        actions = tuple(
            Action("get_item", "GET", "/v1/item/{{id}}", params={{"id": str}})
            if a.name == "get_item" else a
            for a in SandboxConnector.actions
        )


    class TestWrongPath(ConnectorContract):
        connector = WrongPath
        recordings = RECORDINGS


    class FormBody(SandboxConnector):
        def build_request(self, action, params):
            request = super().build_request(action, params)
            if "json" in request:
                request["data"] = request.pop("json")
            return request


    class TestFormBody(ConnectorContract):
        connector = FormBody
        recordings = RECORDINGS


    class SecretInError(SandboxConnector):
        def request(self, method, path, **kwargs):
            try:
                return super().request(method, path, **kwargs)
            except FatalError as exc:
                key = self.secret("api_key")
                raise FatalError(f"{{exc}} (key {{key}})", connector=self.name) from None


    class TestSecretInError(ConnectorContract):
        connector = SecretInError
        recordings = RECORDINGS


    class SecretInLog(SandboxConnector):
        def parse_action(self, action, response):
            logging.getLogger("broken").debug("sent with %s", self.secret("api_key"))
            return super().parse_action(action, response)


    class TestSecretInLog(ConnectorContract):
        connector = SecretInLog
        recordings = RECORDINGS


    class SecretInResult(SandboxConnector):
        def parse_action(self, action, response):
            return {{"echo": self.secret("api_key")}}


    class TestSecretInResult(ConnectorContract):
        connector = SecretInResult
        recordings = RECORDINGS


    class WrongClass(SandboxConnector):
        def request(self, method, path, **kwargs):
            try:
                return super().request(method, path, **kwargs)
            except FatalError as exc:
                raise RetriableError(str(exc), connector=self.name) from None


    class TestWrongClass(ConnectorContract):
        connector = WrongClass
        recordings = RECORDINGS


    class WrongOrder(SandboxConnector):
        streams = replaced("items_newest", order="oldest_first")


    class TestWrongOrder(ConnectorContract):
        connector = WrongOrder
        recordings = RECORDINGS


    class NoncePaginator(CursorPaginator):
        def next_value(self, response, records):
            value = super().next_value(response, records)
            return None if value is None else {{"cursor": value, "nonce": random.random()}}

        def page_params(self):
            params = super().page_params()
            if isinstance(self.current_value, dict):
                params[self.cursor_param] = self.current_value["cursor"]
            return params


    class UnstablePosition(SandboxConnector):
        streams = replaced("items", paginator=NoncePaginator)


    class TestUnstablePosition(ConnectorContract):
        connector = UnstablePosition
        recordings = RECORDINGS


    class TuplePaginator(CursorPaginator):
        def next_value(self, response, records):
            value = super().next_value(response, records)
            return None if value is None else (value,)


    class TuplePosition(SandboxConnector):
        streams = replaced("items", paginator=TuplePaginator)


    class TestTuplePosition(ConnectorContract):
        connector = TuplePosition
        recordings = RECORDINGS


    class NoBudget(SandboxConnector):
        def learning_budget(self, budgets, response):
            return None


    class TestNoBudget(ConnectorContract):
        connector = NoBudget
        recordings = RECORDINGS


    class TwoRequests(SandboxConnector):
        def perform_action(self, action, params, *, idempotency_key=None):
            if action.name == "get_message":
                self.request("GET", "/v1/ping")
            return super().perform_action(action, params, idempotency_key=idempotency_key)


    class TestTwoRequests(ConnectorContract):
        connector = TwoRequests
        recordings = RECORDINGS


    class OtherHost(SandboxConnector):
        def url(self, path):
            return "https://elsewhere.example" + path


    class TestOtherHost(ConnectorContract):
        connector = OtherHost
        recordings = RECORDINGS


    class NoTitle(SandboxConnector):
        title = None


    class TestNoTitle(ConnectorContract):
        connector = NoTitle
        recordings = RECORDINGS


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

# What each broken connector must fail (test name prefixes); TestGood fails nothing.
MUST_FAIL: dict[str, list[str]] = {
    "TestWrongPath": ["test_action_request[get_item]"],
    "TestFormBody": ["test_action_request[create_message]"],
    "TestSecretInError": ["test_error_classified[bad request]", "test_no_secret_leaks[errors:bad"],
    "TestSecretInLog": ["test_action_request[create_message]", "test_no_secret_leaks[actions:"],
    "TestSecretInResult": ["test_action_request[get_item]", "test_auth_applied[api_key]"],
    "TestWrongClass": ["test_error_classified[bad request]", "test_error_classified[not found]"],
    "TestWrongOrder": ["test_stream_pages[items_newest]"],
    "TestUnstablePosition": ["test_stream_stops_on_cycle[items]"],
    "TestTuplePosition": ["test_stream_pages[items]", "test_stream_stops_on_cycle[items]"],
    "TestNoBudget": ["test_rate_limit_headers[limit headers]"],
    "TestTwoRequests": ["test_action_request[get_message]"],
    "TestNoTitle": ["test_metadata_complete"],
    # The path is right, the host is not: the credentials go elsewhere.
    "TestOtherHost": ["test_action_request[get_item]", "test_auth_applied[api_key]"],
    "TestUnrecorded": ["test_metadata_complete", "test_every_action_and_stream_recorded"],
    "TestNoCredentials": ["test_auth_applied[api_key]", "test_auth_applied[basic]"],
    "TestExtraQuery": ["test_action_request[create_message_unkeyed]"],
    "TestQuietLogger": ["test_no_secret_leaks[actions:"],
    "TestSecretDeepInCause": ["test_no_secret_leaks[errors:bad"],
    "TestWrongReplicationKey": ["test_stream_pages[items]"],
    "TestRateUnlearned": ["test_rate_limit_headers[limit headers]"],
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
