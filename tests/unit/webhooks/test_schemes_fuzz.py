"""Any input at all, for every scheme (hypothesis): random secrets, headers (named as the schemes
name theirs, or not), query, body, clock and tolerance. The outcome is a refusal with 400 or 401,
or Graph's validation answer; never another exception, never a delivery to store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_integrations.webhooks.schemes import REASONS, SCHEMES, Refused, verify
from tests.unit.webhooks.senders import SIGNED_HEADERS

# Any text at all in a header: control characters, Latin-1, emoji, lone surrogates.
GARBAGE = st.text(st.characters(exclude_categories=()), max_size=80)


# Names the schemes read, in any case, beside random ones: the fuzz must reach past the first check.
HEADER_NAMES = st.sampled_from(
    sorted(
        {name for names in SIGNED_HEADERS.values() for name in names}
        | {"stripe-signature", "x-github-delivery", "x-github-event"}
    )
).flatmap(lambda n: st.sampled_from([n, n.upper(), n.title()])) | st.text(max_size=20)


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=200, deadline=None, database=None)
@given(
    secret=st.one_of(st.none(), GARBAGE),
    headers=st.lists(st.tuples(HEADER_NAMES, GARBAGE), max_size=8),
    query=st.dictionaries(st.sampled_from(["validationToken", "x"]) | st.text(max_size=5), GARBAGE),
    body=st.binary(max_size=300),
    now=st.floats() | st.integers(-(10**13), 10**13),
    tolerance=st.integers(-(10**6), 10**12),
)
def test_whatever_the_input_the_outcome_is_a_refusal_or_a_handshake(
    scheme: str,
    secret: str | None,
    headers: list[tuple[str, str]],
    query: dict[str, str],
    body: bytes,
    now: float,
    tolerance: int,
) -> None:
    try:
        got = verify(
            scheme,
            secret=secret,
            headers=headers,
            query=query,
            body=body,
            now=now,
            tolerance=tolerance,
        )
    except Refused as refusal:
        assert refusal.__cause__ is None, repr(refusal.__cause__)
        assert refusal.reason in REASONS and refusal.status in (400, 401)
    else:
        # Only Graph's validation answers without a signature: nothing is stored from it.
        assert scheme == "ms-graph-client-state" and got.answer is not None
