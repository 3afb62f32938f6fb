"""Slack's catch-all error rule: an unlisted error refused as a 200 or a 4xx is fatal, while the
same body in a 5xx answer is a server fault, retried by the generic rules."""

from __future__ import annotations

import pytest
import responses

from spark_integrations.connectors import get_connector
from spark_integrations.errors import FatalError, RetriableError

BASE = "https://slack.test/api"


def _post(status: int) -> Exception:
    client = get_connector("slack")({"base_url": BASE}, {"bot_token": "xoxb-secret"})
    with responses.RequestsMock() as mock:
        mock.post(
            f"{BASE}/chat.postMessage",
            status=status,
            json={"ok": False, "error": "something_new"},
        )
        with pytest.raises(Exception) as caught:
            client.run_action("post_message", {"channel": "C1", "text": "hi"})
    return caught.value


@pytest.mark.parametrize("status", [200, 400])
def test_an_unlisted_error_in_a_200_or_4xx_is_fatal(status: int) -> None:
    error = _post(status)
    assert isinstance(error, FatalError)
    assert "something_new" in str(error)


@pytest.mark.parametrize("status", [500, 502])
def test_an_unlisted_error_in_a_5xx_is_retried(status: int) -> None:
    error = _post(status)
    assert isinstance(error, RetriableError)
    assert not isinstance(error, FatalError)
