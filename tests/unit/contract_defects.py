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
}
