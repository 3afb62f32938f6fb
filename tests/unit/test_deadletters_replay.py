"""Dead letters replay exactly what was sent and display a redacted copy, whatever the kwargs
(1,000 generated cases on each store), and keys rotate re-encrypts the replay copies."""

from __future__ import annotations

import json
import math
from typing import Any

from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from spark_integrations.redaction import REDACTED, is_secret_name
from spark_integrations.store import DeadLetter, SecretBox, session_scope
from spark_integrations.store.keys import rotate_secrets
from spark_integrations.tasks.deadletters import replay_kwargs, write_dead_letter
from tests.unit.task_env import task_env_fixture  # noqa: F401 - the task_env fixture

MARK = "Vq7Secret"


ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
SECRET_NAME = st.sampled_from(
    ["clientSecret", "refresh_token", "secret_key", "accessToken", "X-Api-Key", "apiKey",
     "PASSWORD", "Authorization", "private-key", "sessionToken", "client_secret"]
)  # fmt: skip
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    ANY_TEXT,
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(ANY_TEXT, SECRET_NAME), inner, max_size=3),
    ),
    max_leaves=10,
)


@st.composite
def call_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    params = draw(st.dictionaries(st.one_of(ANY_TEXT, SECRET_NAME), VALUE, max_size=4))
    if draw(st.booleans()):
        params[draw(SECRET_NAME)] = MARK + draw(ANY_TEXT)
    return {
        "connection_id": draw(st.one_of(st.uuids().map(str), ANY_TEXT, st.integers(), st.none())),
        "action": draw(st.one_of(st.just("create_message"), ANY_TEXT, st.text(min_size=201))),
        "params": params,
        "idempotency_key": draw(st.one_of(st.none(), ANY_TEXT)),
    }


def same(a: Any, b: Any) -> bool:
    """Equal, NaN included."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def secrets_shown(value: Any) -> list[Any]:
    """Values under secret-looking names that the display copy still shows."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if is_secret_name(key) and item != REDACTED:
                found.append(item)
            found += secrets_shown(item)
    elif isinstance(value, list):
        for item in value:
            found += secrets_shown(item)
    return found


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kwargs=call_kwargs(), error=ANY_TEXT)
def test_a_dead_letter_replays_exactly_what_was_sent(
    task_env: str, fernet_key: str, kwargs: dict[str, Any], error: str
) -> None:
    letter_id = write_dead_letter(
        task="integrations.call", task_id="t-" + error, kwargs=kwargs, error=error, attempts=0
    )
    with session_scope(task_env) as session:
        letter = session.get(DeadLetter, letter_id)
        assert letter is not None
        again = replay_kwargs(letter, SecretBox([fernet_key]))
        shown = letter.kwargs
        raw = bytes(letter.replay_kwargs or b"")
        session.delete(letter)
    assert same(again, kwargs)
    assert secrets_shown(shown) == []
    assert MARK not in json.dumps(shown, allow_nan=False)
    assert MARK.encode() not in raw  # the replay copy is encrypted


def test_keys_rotate_reencrypts_the_replay_copies(task_env: str, fernet_key: str) -> None:
    kwargs = {"connection_id": "c", "action": "a", "params": {"api_key": MARK, "n": math.inf}}
    letter_id = write_dead_letter(
        task="integrations.call", task_id="t", kwargs=kwargs, error="e", attempts=1
    )
    newer = Fernet.generate_key().decode()
    report = rotate_secrets(lambda: session_scope(task_env), SecretBox([newer, fernet_key]))
    counts = report.columns["dead_letters.replay_kwargs"]
    assert counts.examined == 1 and counts.reencrypted == 1
    with session_scope(task_env) as session:
        letter = session.get(DeadLetter, letter_id)
        assert letter is not None
        assert same(replay_kwargs(letter, SecretBox([newer])), kwargs)
        assert letter.kwargs["params"] == {"api_key": REDACTED, "n": "inf"}


def test_a_letter_from_before_0007_replays_its_stored_kwargs(
    task_env: str, fernet_key: str
) -> None:
    with session_scope(task_env) as session:
        session.add(DeadLetter(task="integrations.sync", kwargs={"sync_id": "s"}, error="e"))
    with session_scope(task_env) as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert replay_kwargs(letter, SecretBox([fernet_key])) == {"sync_id": "s"}
