"""Parsing of ``--config`` and ``--secret`` options of ``connections add|update``."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from spark_integrations.errors import UsageError
from spark_integrations.workers.commands_connections import parse_config, parse_secrets

# --- --config ------------------------------------------------------------------------------------


def test_config_absent_is_empty() -> None:
    assert parse_config(None) == {}


def test_config_object_parsed() -> None:
    raw = '{"base_url": "http://127.0.0.1:9", "rate_limit": 2.5, "scopes": ["a"], "x": null}'
    assert parse_config(raw) == {
        "base_url": "http://127.0.0.1:9",
        "rate_limit": 2.5,
        "scopes": ["a"],
        "x": None,
    }


@pytest.mark.parametrize("raw", ["{", "{'a': 1}", "base_url=http://x", "", '{"a": 1,}'])
def test_config_invalid_json_refused(raw: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_config(raw)
    assert "--config" in str(info.value)
    assert "JSON" in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    "raw", ['{"rate_limit": NaN}', '{"rate_limit": Infinity}', '{"a": {"b": -Infinity}}']
)
def test_config_refuses_non_standard_json_numbers(raw: str) -> None:
    # Python's json module reads NaN and Infinity, but they are not JSON: the store's JSON column
    # on PostgreSQL refuses them, so the command would fail later with a database error.
    with pytest.raises(UsageError) as info:
        parse_config(raw)
    assert "--config" in str(info.value)


@pytest.mark.parametrize("raw", ["[1, 2]", '"text"', "42", "null", "true"])
def test_config_must_be_an_object(raw: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_config(raw)
    assert "--config must be a JSON object" in str(info.value)


# --- --secret ------------------------------------------------------------------------------------


def test_secret_key_value() -> None:
    assert parse_secrets(("api_key=abc", "password=p=q=r", " username =u")) == {
        "api_key": "abc",
        "password": "p=q=r",
        "username": "u",
    }


def test_no_secrets() -> None:
    assert parse_secrets(()) == {}


def test_secret_from_file_strips_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-file-value\n")
    (tmp_path / "crlf").write_bytes(b"crlf-value\r\n")
    (tmp_path / "inner").write_text("line one\nline two\n")
    assert parse_secrets(
        (
            f"api_key=@{tmp_path / 'key'}",
            f"password=@{tmp_path / 'crlf'}",
            f"cert=@{tmp_path / 'inner'}",
        )
    ) == {"api_key": "from-file-value", "password": "crlf-value", "cert": "line one\nline two"}


def test_secret_file_keeps_leading_and_inner_spaces(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("  spaced value \n")
    assert parse_secrets((f"api_key=@{tmp_path / 'key'}",)) == {"api_key": "  spaced value "}


def test_missing_secret_file_names_key_not_other_secrets(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    with pytest.raises(UsageError) as info:
        parse_secrets(("api_key=EarlierSecret-31337", f"password=@{missing}"))
    message = str(info.value)
    assert "password" in message
    assert "EarlierSecret-31337" not in message
    assert "EarlierSecret-31337" not in repr(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_secret_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        parse_secrets((f"api_key=@{tmp_path}",))
    assert "api_key" in str(info.value)


def test_empty_secret_file_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError) as info:
        parse_secrets((f"api_key=@{tmp_path / 'empty'}",))
    assert "api_key" in str(info.value)
    assert "empty" in str(info.value)


def test_duplicate_secret_refused_without_values() -> None:
    with pytest.raises(UsageError) as info:
        parse_secrets(("api_key=FirstValue-aaa", "api_key=SecondValue-bbb"))
    message = str(info.value)
    assert "api_key" in message
    assert "twice" in message
    assert "FirstValue-aaa" not in message
    assert "SecondValue-bbb" not in message


def test_duplicate_after_key_normalisation_refused() -> None:
    with pytest.raises(UsageError):
        parse_secrets(("api_key=a", " api_key =b"))


def test_empty_value_refused() -> None:
    with pytest.raises(UsageError) as info:
        parse_secrets(("api_key=",))
    assert "api_key" in str(info.value)
    assert "empty" in str(info.value)


@pytest.mark.parametrize("item", ["=value-without-key", "", "  =x"])
def test_secret_needs_a_key(item: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_secrets((item,))
    assert "--secret needs a key" in str(info.value)
    assert "value-without-key" not in str(info.value)


def test_key_alone_reads_a_line_from_non_tty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("first-secret\r\nsecond-secret\nleft over\n"))
    assert parse_secrets(("api_key", "password", "username=u")) == {
        "api_key": "first-secret",
        "password": "second-secret",
        "username": "u",
    }
    assert sys.stdin.read() == "left over\n"


def test_key_alone_last_line_without_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("no-newline"))
    assert parse_secrets(("api_key",)) == {"api_key": "no-newline"}


def test_key_alone_with_empty_stdin_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(UsageError) as info:
        parse_secrets(("api_key",))
    assert "api_key" in str(info.value)
    assert "stdin" in str(info.value)


def test_key_alone_with_blank_line_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    with pytest.raises(UsageError) as info:
        parse_secrets(("api_key",))
    assert "empty" in str(info.value)


def test_key_alone_on_a_terminal_prompts_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    class FakeTty(io.StringIO):
        def isatty(self) -> bool:
            return True

    asked: list[tuple[str, bool]] = []

    def fake_prompt(text: str, hide_input: bool = False, err: bool = False) -> str:
        asked.append((text, hide_input))
        return "typed-secret"

    monkeypatch.setattr(sys, "stdin", FakeTty(""))
    monkeypatch.setattr(click, "prompt", fake_prompt)
    assert parse_secrets(("api_key",)) == {"api_key": "typed-secret"}
    assert asked == [("api_key", True)]
