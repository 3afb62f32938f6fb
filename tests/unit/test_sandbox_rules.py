"""The sandbox connector's one error rule: ``409 idempotency_key_in_use`` (a request under the
same key still in progress at the provider, such as one a killed worker sent) is retried after
a second, as a new attempt; any other 409 is left to the generic rules."""

from __future__ import annotations

import pytest
import responses

from spark_integrations.connectors import get_connector
from spark_integrations.errors import RetriableError

BASE = "https://sandbox.test"


def _create(body: dict[str, str]) -> Exception:
    client = get_connector("sandbox")({"base_url": BASE}, {"api_key": "sk-test"})
    with responses.RequestsMock() as mock:
        mock.post(f"{BASE}/v1/messages", status=409, json=body)
        with pytest.raises(Exception) as caught:
            client.run_action("create_message", {"text": "hi"})
    return caught.value


def test_a_key_still_in_use_is_retried_after_a_second() -> None:
    error = _create({"error": "idempotency_key_in_use", "message": "in progress"})
    assert isinstance(error, RetriableError)
    assert error.retry_after == 1
    assert "still answering" in str(error)


def test_another_409_is_not_this_rule() -> None:
    error = _create({"error": "conflict", "message": "something else"})
    assert "still answering" not in str(error)
