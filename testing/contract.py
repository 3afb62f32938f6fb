"""The contract every connector passes, as a pytest base class.

Subclass it in a test module named ``test_*.py``, with a class named ``Test*``::

    from spark_integrations.testing import ConnectorContract, recordings

    class TestSlackContract(ConnectorContract):
        connector = Slack
        recordings = recordings("recordings/slack.yaml")

Each recorded entry becomes its own test (``test_action[post_message]``,
``test_error[rate limited]``...). Every test also captures the log at DEBUG and fails when a
secret of the recordings appears in a log line, a result, an exception's text or a repr.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pytest

from spark_integrations.connectors.base import Connector
from spark_integrations.testing.capture import every_record
from spark_integrations.testing.checks import (
    Evidence,
    check_action,
    check_auth,
    check_error,
)
from spark_integrations.testing.compare import leaks, log_texts, mask, texts_of
from spark_integrations.testing.limits import check_rate_limit
from spark_integrations.testing.metadata import metadata_problems, unrecorded
from spark_integrations.testing.recordings import Recordings
from spark_integrations.testing.streams import check_cycle, check_stream

__all__ = ["ConnectorContract"]

Check = Callable[[type[Connector], Recordings, Mapping[str, Any], Evidence], None]
# Each parametrised argument, the recordings section it runs over, and its check.
_SECTIONS: dict[str, tuple[str, Check]] = {
    "auth_entry": ("auth", check_auth),
    "action_entry": ("actions", check_action),
    "stream_entry": ("streams", check_stream),
    "cycle_entry": ("streams", check_cycle),
    "error_entry": ("errors", check_error),
    "rate_limit_entry": ("rate_limit", check_rate_limit),
}


class ConnectorContract:
    """The contract suite; set :attr:`connector` and :attr:`recordings` in a subclass."""

    #: The connector class under test (built in, declared by a manifest, or a plugin's).
    connector: ClassVar[type[Connector]]
    #: Its recordings (:func:`spark_integrations.testing.recordings`).
    recordings: ClassVar[Recordings]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrise each check over the entries of its recordings section."""
        recs = type(self).recordings
        if isinstance(recs, Mapping):
            from spark_integrations.testing.recordings import recordings as load

            recs = load(recs)
            type(self).recordings = recs
        for argument, (section, _) in _SECTIONS.items():
            if argument in metafunc.fixturenames:
                metafunc.parametrize(
                    argument, recs.entries(section), ids=recs.ids(section), scope="function"
                )
        if "leak_entry" in metafunc.fixturenames:
            cases = []
            ids = []
            for argument, (section, _) in _SECTIONS.items():
                if argument == "cycle_entry":
                    continue
                for entry, label in zip(recs.entries(section), recs.ids(section), strict=True):
                    cases.append((argument, entry))
                    ids.append(f"{section}:{label}")
            metafunc.parametrize("leak_entry", cases, ids=ids, scope="function")

    # -- helpers ------------------------------------------------------------------------------

    def _run(self, check: Check, entry: Mapping[str, Any]) -> None:
        evidence: Evidence = []
        failure = ""
        with every_record() as records:
            try:
                check(type(self).connector, type(self).recordings, entry, evidence)
            except AssertionError as exc:
                failure = mask(str(exc), type(self).recordings.secret_values())
            except Exception as exc:
                evidence += [("an exception", t) for t in texts_of(exc)]
                self._assert_no_secret(evidence, records)
                raise
        self._assert_no_secret(evidence, records)
        if failure:
            raise AssertionError(failure) from None

    def _assert_no_secret(self, evidence: Evidence, records: list[logging.LogRecord]) -> None:
        texts = [*evidence, *(("the log", t) for t in log_texts(records))]
        found = leaks(type(self).recordings.secret_values(), texts)
        if found:
            raise AssertionError("secrets leak: " + "; ".join(found)) from None

    # -- the checks ---------------------------------------------------------------------------

    def test_metadata_complete(self) -> None:
        """Name, title, docs page, actions and streams described, auth kinds each recorded."""
        problems = metadata_problems(type(self).connector, type(self).recordings)
        assert not problems, f"{type(self).connector.name}: " + "; ".join(problems)

    def test_every_action_and_stream_recorded(self) -> None:
        """Each declared action and stream has at least one recording."""
        problems = unrecorded(type(self).connector, type(self).recordings)
        assert not problems, f"{type(self).connector.name}: " + "; ".join(problems)

    def test_auth_applied(self, auth_entry: Mapping[str, Any]) -> None:
        """An auth kind, given its credentials alone, is sent as documented."""
        self._run(check_auth, auth_entry)

    def test_action_request(self, action_entry: Mapping[str, Any]) -> None:
        """An action builds the documented method, path, query and body."""
        self._run(check_action, action_entry)

    def test_stream_pages(self, stream_entry: Mapping[str, Any]) -> None:
        """A stream reads its recorded pages to the end, in its declared order."""
        self._run(check_stream, stream_entry)

    def test_stream_stops_on_cycle(self, cycle_entry: Mapping[str, Any]) -> None:
        """A page handing back a position already followed is caught as a cycle."""
        self._run(check_cycle, cycle_entry)

    def test_error_classified(self, error_entry: Mapping[str, Any]) -> None:
        """A documented error answer is classified as expected, with the right wait."""
        self._run(check_error, error_entry)

    def test_rate_limit_headers(self, rate_limit_entry: Mapping[str, Any]) -> None:
        """Rate-limit headers give the expected hint and feed the expected budget."""
        self._run(check_rate_limit, rate_limit_entry)

    def test_no_secret_leaks(self, leak_entry: tuple[str, Mapping[str, Any]]) -> None:
        """No secret in a log line (any logger, at DEBUG), result, exception text or repr,
        whatever the check found (its other findings are the other tests' to report)."""
        argument, entry = leak_entry
        check = _SECTIONS[argument][1]
        evidence: Evidence = []
        with every_record() as records:
            try:
                check(type(self).connector, type(self).recordings, entry, evidence)
            except (AssertionError, pytest.skip.Exception):
                pass
            except Exception as exc:
                evidence += [("an exception", t) for t in texts_of(exc)]
        self._assert_no_secret(evidence, records)
