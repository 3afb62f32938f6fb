"""The operator's console: ``GET /console`` (read-only) and the one write, replaying a dead letter.

``GET /console`` shows the fleet's own domain (:mod:`gateway.console_data`) to whoever
:class:`ConsoleAuth` lets in. ``POST /console/dead-letters/{id}/replay`` replays one letter
through the same function as ``spark-integrations dlq replay ID``
(:func:`tasks.replay.replay_letter`), once: the letter is claimed first with a conditional update
on the ``replayed_at`` the page showed, so a form sent twice (a double click, a resubmission)
sends the task once. It must carry a token of the page's form and come from the gateway's own
origin (:mod:`gateway.console_auth`); it answers 303 back to the console with a flash message.

Every answer is ``no-store``, framed by nobody, and under a Content-Security-Policy that allows
nothing but the page's inline style and forms posting to the gateway itself. Refusals are one
sentence; the store unreachable is a 503, the coordination Redis unreachable is "unknown" on the
page and a 503 for a replay (nothing sent), the broker unreachable a 503 for a replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from celery import Celery
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from spark_integrations.errors import CoordinationError, SecretError, StoreError
from spark_integrations.gateway.console_auth import (
    ConsoleAuth,
    ConsoleRefusal,
    Operator,
    same_origin,
)
from spark_integrations.gateway.console_data import ConsoleReader
from spark_integrations.gateway.console_page import CONSOLE_PATH, render_console
from spark_integrations.gateway.console_views import Letter
from spark_integrations.gateway.pages import page
from spark_integrations.settings import Settings
from spark_integrations.store import DeadLetter, SecretBox
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.replay import replay_letter

__all__ = ["CONSOLE_HEADERS", "Console"]

logger = logging.getLogger("gateway")

SessionFactory = Callable[[], AbstractContextManager[Session]]

CONSOLE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Same-origin, not no-referrer: a form posted under no-referrer carries "Origin: null",
    # and the replay's origin check needs the real one.
    "Referrer-Policy": "same-origin",
}
FLASH_COOKIE = "spark_console_flash"
#: Largest replay form read (two short fields).
MAX_FORM_BYTES = 4096
_FLASH_CHARS = 300


class _Unavailable(Exception):
    """Raised when a service a replay needs does not answer; nothing was replayed."""


def _answer(status: int, title: str, message: str, challenge: tuple[str, ...] = ()) -> Response:
    answer = page(status, title, message)
    answer.headers.update(CONSOLE_HEADERS)
    for one in challenge:
        answer.headers.append("WWW-Authenticate", one)
    return answer


def _refused(refusal: ConsoleRefusal) -> Response:
    titles = {401: "Authentication required", 403: "Forbidden"}
    return _answer(
        refusal.status, titles.get(refusal.status, "Refused"), str(refusal), refusal.challenge
    )


def _seen(letter: Letter | DeadLetter) -> str:
    return letter.replayed_at.isoformat() if letter.replayed_at else ""


class Console:
    """The console's endpoints over one fleet."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        celery: Callable[[], Celery],
        reader: ConsoleReader | None = None,
    ) -> None:
        """Bind the console to the fleet.

        Args:
            settings: the mode, credentials, secret keys and public URL.
            sessions: opens one store transaction.
            celery: the gateway's client app, which sends the replayed tasks.
            reader: what the page reads (default: the store and coordination Redis of settings).
        """
        self.settings = settings
        self.sessions = sessions
        self.auth = ConsoleAuth(settings)
        self.reader = reader or ConsoleReader(settings, sessions)
        self.box = SecretBox(settings.secret_keys)
        self._celery = celery
        self._secure_cookie = settings.public_url.startswith("https://")

    # -- GET /console -------------------------------------------------------------------------

    def page(self, request: Request) -> Response:
        try:
            operator = self.auth.authenticate(request)
        except ConsoleRefusal as refusal:
            return _refused(refusal)
        try:
            snapshot = self.reader.snapshot()
        except (StoreError, DBAPIError) as exc:
            logger.error("console: the store cannot be read (%s)", type(exc).__name__)
            return _answer(503, "Store unavailable", "The store cannot be reached; try again soon.")
        flash = request.cookies.get(FLASH_COOKIE)
        text = self.auth.open_flash(unquote(flash)) if flash else None

        def token_for(letter: Letter) -> str:
            return self.auth.replay_token(operator, letter.id, _seen(letter))

        answer = HTMLResponse(render_console(snapshot, token_for, text), headers=CONSOLE_HEADERS)
        if flash is not None:
            answer.delete_cookie(FLASH_COOKIE, path=CONSOLE_PATH, samesite="strict", httponly=True)
        return answer

    # -- POST /console/dead-letters/{letter_id}/replay ------------------------------------------

    async def replay(self, request: Request) -> Response:
        letter_id = str(request.path_params["letter_id"])
        try:
            operator = self.auth.authenticate(request)
            if not same_origin(request, self.settings.public_url):
                raise ConsoleRefusal(
                    403, "The replay was refused: it did not come from the console's own page."
                )
            form = await self._form(request)
            seen = form.get("seen", "")
            self.auth.check_replay_token(operator, letter_id, seen, form.get("token", ""))
        except ConsoleRefusal as refusal:
            return _refused(refusal)
        try:
            flash = await run_in_threadpool(self._replay, operator, letter_id, seen)
        except _Unavailable as exc:
            return _answer(503, "Not replayed", str(exc))
        except SecretError as exc:
            return _answer(409, "Not replayed", f"Nothing was replayed: {exc}")
        if flash is None:
            return _answer(404, "Not found", f"No dead letter has the id {letter_id!r}.")
        answer = RedirectResponse(
            f"{CONSOLE_PATH}#dead-letters", status_code=303, headers=CONSOLE_HEADERS
        )
        answer.set_cookie(
            FLASH_COOKIE,
            quote(self.auth.seal_flash(flash[:_FLASH_CHARS]), safe=" "),
            max_age=60,
            path=CONSOLE_PATH,
            secure=self._secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return answer

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise ConsoleRefusal(400, "The replay was refused: it is not the console's form.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise ConsoleRefusal(413, "The replay was refused: the form is too large.")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            raise ConsoleRefusal(400, "The replay was refused: the form is malformed.") from None
        return dict(pairs)

    def _send(self, task: str, kwargs: dict[str, Any], queue: str) -> str:
        try:
            return str(self._celery().send_task(task, kwargs=kwargs, queue=queue).id)
        except Exception as exc:  # kombu's and redis' errors alike: nothing was queued
            logger.error("console: sending %s failed (%s)", task, type(exc).__name__)
            raise _Unavailable(
                "Nothing was replayed: the broker does not answer; try again soon."
            ) from None

    def _replay(self, operator: Operator, letter_id: str, seen: str) -> str | None:
        """Claim the letter as the page showed it and replay it; the flash message, or None
        when there is no such letter."""
        tools = self.reader.coordination()
        if tools is None:
            raise _Unavailable("Nothing was replayed: the coordination Redis cannot be used.")
        try:
            shown = datetime.fromisoformat(seen) if seen else None
        except ValueError:
            shown = None  # the token covered it, so the page showed it: cannot happen
        try:
            with self.sessions() as session:
                now = utcnow()
                same = (
                    DeadLetter.replayed_at.is_(None)
                    if shown is None
                    else DeadLetter.replayed_at == shown
                )
                claimed = session.execute(
                    update(DeadLetter)
                    .where(DeadLetter.id == letter_id, same)
                    .values(replayed_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
                letter = session.get(DeadLetter, letter_id)
                if letter is None:
                    return None
                if not claimed:
                    return (
                        f"Dead letter {letter_id} was not replayed again: it was replayed "
                        "since the page was shown (the page now shows when)."
                    )
                task_id = replay_letter(
                    letter, box=self.box, idempotency=tools.idempotency, send=self._send
                )
        except CoordinationError:
            raise _Unavailable(
                "Nothing was replayed: the coordination Redis does not answer; try again soon."
            ) from None
        except (StoreError, DBAPIError) as exc:
            logger.error("console: the store cannot be written (%s)", type(exc).__name__)
            raise _Unavailable(
                "Nothing was replayed: the store cannot be reached; try again soon."
            ) from None
        logger.info(
            "console: dead letter %s replayed as task %s (%s)", letter_id, task_id, operator.how
        )
        return f"Dead letter {letter_id} replayed as task {task_id}."
