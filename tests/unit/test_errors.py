"""errors: the tree drawn in the module's docstring, pickling, and the attributes errors carry."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest

from spark_integrations import errors
from spark_integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    CoordinationError,
    FatalError,
    IntegrationError,
    NotFoundError,
    PaginationLoopError,
    PoisonMessageError,
    ProviderError,
    RateLimitedError,
    RetriableError,
    SecretError,
    ServiceError,
    SkippableError,
    StoreError,
    UsageError,
    WaitTimeoutError,
)

PROVIDER_ERRORS = [
    ProviderError,
    RetriableError,
    RateLimitedError,
    AuthenticationError,
    FatalError,
    PaginationLoopError,
]
OTHER_ERRORS = [
    IntegrationError,
    ConfigurationError,
    UsageError,
    NotFoundError,
    StoreError,
    SecretError,
    PoisonMessageError,
    CoordinationError,
    ServiceError,
    WaitTimeoutError,
    SkippableError,
]


def docstring_tree() -> dict[str, str | None]:
    """Each class drawn in the docstring, mapped to the class drawn as its parent."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.search(r"\b([A-Z][A-Za-z]+Error)\b", line)
        if match is None or (line.strip() != match.group(1) and "── " not in line):
            continue
        name = match.group(1)
        column = line.index(name)
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((column, name))
    return parents


def test_docstring_draws_every_exported_class() -> None:
    tree = docstring_tree()
    assert set(tree) == set(errors.__all__)
    assert tree["IntegrationError"] is None
    # Spot-check the parser itself against a few lines of the drawing.
    assert tree["RateLimitedError"] == "RetriableError"
    assert tree["PaginationLoopError"] == "FatalError"
    assert tree["NotFoundError"] == "UsageError"
    assert tree["SkippableError"] == "IntegrationError"
    assert tree["InvalidGrantError"] == "AuthenticationError"


@pytest.mark.parametrize(
    ("child", "parent"),
    [(c, p) for c, p in docstring_tree().items() if p is not None],
)
def test_classes_derive_as_drawn(child: str, parent: str) -> None:
    child_cls = getattr(errors, child)
    parent_cls = getattr(errors, parent)
    assert child_cls.__bases__ == (parent_cls,)
    assert issubclass(child_cls, parent_cls)


def test_root_is_an_exception() -> None:
    assert IntegrationError.__bases__ == (Exception,)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), IntegrationError)


@pytest.mark.parametrize(
    ("cls", "not_parent"),
    [
        (RateLimitedError, FatalError),
        (AuthenticationError, RetriableError),
        (AuthenticationError, FatalError),
        (FatalError, RetriableError),
        (SkippableError, ProviderError),
        (CoordinationError, StoreError),
        (PaginationLoopError, RetriableError),
        (NotFoundError, ProviderError),
        (UsageError, ProviderError),
        (ConfigurationError, UsageError),
        (RetriableError, RateLimitedError),
    ],
)
def test_branches_do_not_overlap(cls: type, not_parent: type) -> None:
    assert not issubclass(cls, not_parent)


# --- attributes -------------------------------------------------------------------------------


def test_provider_error_carries_connector_status_response() -> None:
    response = object()
    err = ProviderError("acme answered 404.", connector="acme", status=404, response=response)
    assert str(err) == "acme answered 404. [acme: status 404, not applied]"
    assert err.args == (str(err),)
    assert (err.connector, err.status, err.response) == ("acme", 404, response)


@pytest.mark.parametrize(
    ("status", "applied", "context"),
    [
        (502, True, " [acme: status 502, may have been applied]"),
        (None, True, " [acme: no answer, may have been applied]"),
        (None, False, " [acme: no answer, not applied]"),
    ],
)
def test_a_provider_error_message_names_connector_status_and_applied(
    status: int | None, applied: bool, context: str
) -> None:
    err = RetriableError("acme failed.", connector="acme", status=status, maybe_applied=applied)
    assert str(err) == "acme failed." + context


def test_provider_error_defaults() -> None:
    err = FatalError("nope.")
    assert (err.connector, err.status, err.response, err.maybe_applied) == ("", None, None, False)
    assert str(err) == "nope."  # no connector: nothing to add


@pytest.mark.parametrize("cls", PROVIDER_ERRORS)
def test_a_message_rebuilt_from_its_text_keeps_its_context_once(cls: type[ProviderError]) -> None:
    # Celery's JSON results rebuild an exception as cls(*args): the text alone, said once.
    err = cls("acme answered 500.", connector="acme", status=500)
    assert str(cls(*err.args)) == str(err)


@pytest.mark.parametrize("cls", [RetriableError, RateLimitedError])
def test_retriable_error_keeps_its_wait_and_maybe_applied(cls: type[RetriableError]) -> None:
    err = cls("acme answered 503.", connector="acme", status=503, retry_after=2.5,
              maybe_applied=True)  # fmt: skip
    assert err.retry_after == 2.5
    assert err.maybe_applied is True
    assert err.connector == "acme"
    assert err.status == 503


def test_retriable_error_defaults() -> None:
    err = RetriableError("x.")
    assert err.retry_after is None
    assert err.maybe_applied is False
    assert err.response is None


# --- pickling ---------------------------------------------------------------------------------


class Unpicklable:
    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a response cannot be pickled")


@pytest.mark.parametrize("cls", PROVIDER_ERRORS)
def test_provider_errors_pickle_without_the_response(cls: type[ProviderError]) -> None:
    err = cls("acme answered 500: oops", connector="acme", status=500, response=Unpicklable())
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert str(copy) == str(err) == "acme answered 500: oops [acme: status 500, not applied]"
    assert copy.args == err.args
    assert (copy.connector, copy.status, copy.maybe_applied) == ("acme", 500, False)
    assert copy.response is None


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_rate_limited_error_pickles_with_every_protocol(protocol: int) -> None:
    err = RateLimitedError("acme answered 429 (rate limited).", retry_after=3.0,
                           response=Unpicklable())  # fmt: skip
    copy = pickle.loads(pickle.dumps(err, protocol=protocol))
    assert type(copy) is RateLimitedError
    assert str(copy) == str(err)
    assert isinstance(copy, RetriableError)


@pytest.mark.parametrize("cls", OTHER_ERRORS)
def test_other_errors_pickle(cls: type[IntegrationError]) -> None:
    copy = pickle.loads(pickle.dumps(cls("connection c1 does not exist.")))
    assert type(copy) is cls
    assert str(copy) == "connection c1 does not exist."


# --- how the tree is used ---------------------------------------------------------------------


ROOT = Path(__file__).resolve().parents[2]


def package_files() -> list[Path]:
    """The package's source files (the repository root is the package)."""
    skipped = {"tests", "bench", "build", "docs", ".venv", ".typecheck", ".git"}
    return sorted(p for p in ROOT.rglob("*.py") if not skipped & set(p.relative_to(ROOT).parts))


def raised_names(path: Path) -> set[str]:
    """The names of the exception classes a file raises by calling them (``raise X(...)``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
    return names


def test_no_code_raises_the_root_class() -> None:
    raising = [
        str(p.relative_to(ROOT)) for p in package_files() if "IntegrationError" in raised_names(p)
    ]
    assert not raising, raising


def test_every_class_of_the_tree_is_used_outside_its_module() -> None:
    # Raised, caught or built somewhere in the package: a class nobody uses is removed instead.
    text = "\n".join(p.read_text() for p in package_files() if p != ROOT / "errors.py")
    unused = [name for name in errors.__all__ if name != "IntegrationError" and name not in text]
    assert not unused, unused
