"""The console's HTML: one server-rendered page, inline CSS, no script, nothing from elsewhere.

Every value from the store or Redis goes through :func:`html.escape` (:func:`_e`), attribute
values included; the only markup is written here. Times are shown in UTC with how long ago (or
how soon) they are, computed against the snapshot's own clock.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from spark_integrations.gateway.console_views import (
    ConnectionHealth,
    Letter,
    Limit,
    Snapshot,
    SyncHealth,
    TokenState,
    Webhook,
)

__all__ = ["CONSOLE_PATH", "render_console", "replay_path"]

CONSOLE_PATH = "/console"
UNKNOWN = "unknown"

#: A replay form's token, made for one letter and what the page shows of it.
TokenFor = Callable[[Letter], str]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2327;background:#f6f7f7}
header{background:#1d2327;color:#fff;padding:.8rem 1.2rem}
header h1{font-size:1.25rem;margin:0 0 .3rem}
header nav a{color:#c3e1ff;margin-right:1rem}
main{padding:0 1.2rem 2rem}
h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.86rem}
th,td{border:1px solid #dcdcde;padding:.3rem .45rem;text-align:left;vertical-align:top}
th{background:#f0f0f1}
code{font-size:.8rem;word-break:break-all}
.muted{color:#646970}
.flash{background:#e7f5ea;border:1px solid #68de7c;padding:.5rem .8rem;margin:1rem 0}
.warn{background:#fcf0f1;border:1px solid #f86368;padding:.5rem .8rem;margin:1rem 0}
.s{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.8rem}
.s-ok{background:#d1f0d9}.s-bad{background:#facfd2}.s-mid{background:#fcf3cf}.s-off{background:#dcdcde}
ul.runs{margin:0;padding-left:1rem}
form{margin:0}
button{font:inherit;padding:.15rem .6rem;cursor:pointer}
"""

_GOOD = {"active", "succeeded", "processed", "closed", "enabled"}
_BAD = {"needs_reauth", "failed", "open", "disabled"}
_MIDDLE = {"needs_auth", "running", "queued", "received", "processing", "half_open"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def replay_path(letter_id: str) -> str:
    """Where a letter's Replay form posts."""
    return f"{CONSOLE_PATH}/dead-letters/{quote(letter_id, safe='')}/replay"


def _badge(state: str) -> str:
    kind = (
        "s-ok" if state in _GOOD else "s-bad" if state in _BAD else "s-mid" if state in _MIDDLE
        else "s-off"
    )  # fmt: skip
    return f'<span class="s {kind}">{_e(state)}</span>'


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return (
                f"{seconds / size:.1f} {unit}"
                if seconds < 10 * size
                else f"{seconds // size:.0f} {unit}"
            )
    return f"{seconds:.0f} s"


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _when(value: datetime | None, now: datetime, never: str = "never") -> str:
    if value is None:
        return f'<span class="muted">{_e(never)}</span>'
    delta = (now - value).total_seconds()
    relative = f"{_span(delta)} ago" if delta >= 0 else f"in {_span(delta)}"
    return (
        f'<time datetime="{_e(value.isoformat())}">{_e(_stamp(value))}</time> '
        f'<span class="muted">({_e(relative)})</span>'
    )


def _epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _table(headings: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# -- connections --------------------------------------------------------------------------------


def _token(token: TokenState | None, now: datetime) -> str:
    if token is None:
        return '<span class="muted">no OAuth token</span>'
    if token.expires_at is None:
        expiry = "no expiry"
    else:
        left = (token.expires_at - now).total_seconds()
        word = "expires" if left > 0 else "expired"
        expiry = f"{word} {_when(token.expires_at, now)}"
    parts = [
        expiry,
        f"obtained {_when(token.obtained_at, now)} (version {_e(token.version)}, "
        f"{_e(token.grant_type.replace('_', ' '))})",
    ]
    if not token.renewable:
        parts.append(
            '<span class="muted">no refresh token: renewed only by connecting again</span>'
        )
    if token.refresh_pending_since is not None:
        parts.append(
            f"a refresh started {_when(token.refresh_pending_since, now)} by "
            f"<code>{_e(token.refresh_pending_by)}</code> has not finished (still in flight, "
            "or its answer was lost)"
        )
    return "<br>".join(parts)


def _budget(limit: Limit, now: datetime) -> str:
    state = limit.state
    if state is None:
        return f"<code>{_e(limit.key)}</code>: {UNKNOWN}"
    rate = float(state["rate"])
    text = f"<code>{_e(limit.key)}</code>: {rate:g}/s"
    if state.get("learned_rate") is not None:
        learned = float(state["learned_rate"])
        text += f" (configured {limit.configured:g}/s, the provider's headers say {learned:g}/s)"
    ahead, planned = float(state["ahead"]), float(state["planned"])
    text += f", booked {ahead:.2f} s ahead"
    waiting = round((planned - ahead) * rate)  # slots planned beyond the emission schedule
    if waiting > 0:
        text += f", about {waiting} deferred"
    if state.get("paused_until") is not None:
        text += f", paused until {_when(_epoch(float(state['paused_until'])), now)}"
    return text


def _breaker(limit: Limit, now: datetime) -> str:
    state = limit.state
    if state is None:
        return f"<code>{_e(limit.key)}</code>: {UNKNOWN}"
    text = f"<code>{_e(limit.key)}</code>: {_badge(str(state['state']))}"
    text += f" {_e(state['failures'])}/{limit.configured:g} failures"
    if state["state"] == "open" and state.get("open_until") is not None:
        text += f", probes {_when(_epoch(float(state['open_until'])), now)}"
    if state.get("reopens"):
        text += f", reopened {_e(state['reopens'])} times"
    return text


def _connection_row(conn: ConnectionHealth, now: datetime) -> list[str]:
    status = _badge(conn.status)
    if conn.reason:
        status += f"<br>{_e(conn.reason)}"
    success = _when(conn.last_success, now)
    if conn.last_success_source:
        success += f'<br><span class="muted">{_e(conn.last_success_source)}</span>'
    if conn.limits_problem:
        budgets = breakers = f'<span class="muted">{_e(conn.limits_problem)}</span>'
    else:
        budgets = "<br>".join(_budget(b, now) for b in conn.budgets)
        breakers = "<br>".join(_breaker(b, now) for b in conn.breakers)
    return [
        f"{_e(conn.name)}<br><code>{_e(conn.id)}</code>",
        _e(conn.provider),
        status,
        success,
        _token(conn.token, now),
        budgets,
        breakers,
    ]


# -- syncs, dead letters, webhooks ----------------------------------------------------------


def _sync_row(sync: SyncHealth, now: datetime) -> list[str]:
    if sync.last_success is None:
        lag = '<span class="muted">no successful run</span>'
    else:
        lag = _e(_span((now - sync.last_success).total_seconds()))
    runs = "".join(
        f"<li>{_badge(r.status)} {_e(r.records)} records, {_e(r.pages)} pages"
        + (" (full refresh)" if r.full_refresh else "")
        + f", started {_when(r.started_at, now, 'not yet')}"
        + (f", finished {_when(r.finished_at, now)}" if r.finished_at else "")
        + (f"<br>{_e(r.error)}" if r.error else "")
        + "</li>"
        for r in sync.runs
    )
    return [
        f"<code>{_e(sync.id)}</code>",
        f"{_e(sync.connection_name)}",
        _e(sync.stream),
        _e(sync.schedule or "on demand"),
        f"<code>{_e(sync.destination)}</code>",
        _badge("enabled" if sync.enabled else "paused"),
        lag,
        _when(sync.next_run_at, now, "not scheduled"),
        f'<ul class="runs">{runs}</ul>' if runs else '<span class="muted">no run yet</span>',
    ]


def _connection(connection_id: str | None, names: Mapping[str, str]) -> str:
    if not connection_id:
        return "-"
    name = names.get(connection_id)
    shown = f"<code>{_e(connection_id)}</code>"
    return f"{_e(name)}<br>{shown}" if name else shown


def _letter_row(
    letter: Letter, now: datetime, token_for: TokenFor, names: Mapping[str, str]
) -> list[str]:
    seen = letter.replayed_at.isoformat() if letter.replayed_at else ""
    form = (
        f'<form method="post" action="{_e(replay_path(letter.id))}">'
        f'<input type="hidden" name="token" value="{_e(token_for(letter))}">'
        f'<input type="hidden" name="seen" value="{_e(seen)}">'
        f'<button type="submit" name="replay" value="{_e(letter.id)}">Replay</button></form>'
    )
    return [
        _when(letter.created_at, now),
        f"<code>{_e(letter.id)}</code>",
        _e(letter.task),
        _connection(letter.connection_id, names),
        _e(letter.action or "-"),
        _e(letter.attempts),
        _e(letter.error),
        _when(letter.replayed_at, now, "not replayed"),
        form,
    ]


def _webhook_row(event: Webhook, now: datetime, names: Mapping[str, str]) -> list[str]:
    return [
        _when(event.received_at, now),
        _e(event.provider),
        _connection(event.connection_id, names),
        _e(event.event_type or "-"),
        f"<code>{_e(event.delivery_id)}</code>",
        _badge(event.status),
        _e(event.attempts),
        _when(event.processed_at, now, "-"),
    ]


def render_console(snapshot: Snapshot, token_for: TokenFor, flash: str | None = None) -> str:
    """The console's page for ``snapshot``; ``token_for`` makes each Replay form's token."""
    now = snapshot.now
    names = {c.id: c.name for c in snapshot.connections}
    notes = []
    if flash:
        notes.append(f'<p class="flash" role="status">{_e(flash)}</p>')
    if not snapshot.coordination_ok:
        notes.append(
            '<p class="warn">The coordination Redis does not answer: rate budgets and circuit '
            f"breakers are {UNKNOWN}.</p>"
        )
    for line in snapshot.truncated:
        notes.append(f'<p class="muted">Shown: {_e(line)}.</p>')
    connections = _table(
        ["Connection", "Provider", "Status", "Last success", "OAuth token", "Rate budgets",
         "Circuit breakers"],
        (_connection_row(c, now) for c in snapshot.connections),
        "No connection yet.",
    )  # fmt: skip
    syncs = _table(
        ["Sync", "Connection", "Stream", "Schedule", "Destination", "State", "Lag", "Next run",
         "Last runs"],
        (_sync_row(s, now) for s in snapshot.syncs),
        "No sync yet.",
    )  # fmt: skip
    letters = _table(
        ["Written", "Id", "Task", "Connection", "Action", "Attempts", "Error", "Replayed", ""],
        (_letter_row(d, now, token_for, names) for d in snapshot.letters),
        "No dead letter.",
    )
    shown = len(snapshot.letters)
    letters_note = (
        f'<p class="muted">The newest {shown} of {snapshot.letters_total}.</p>'
        if snapshot.letters_total > shown
        else ""
    )
    webhooks = _table(
        ["Received", "Provider", "Connection", "Type", "Delivery id", "Status", "Attempts",
         "Processed"],
        (_webhook_row(w, now, names) for w in snapshot.webhooks),
        "No webhook received yet.",
    )  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Console - spark-integrations</title>
<style>{_STYLE}</style></head>
<body>
<header><h1>spark-integrations console</h1>
<div class="muted">{_e(snapshot.mode)} mode, read {_e(_stamp(now))}</div>
<nav><a href="#connections">Connections</a><a href="#syncs">Syncs</a>
<a href="#dead-letters">Dead letters</a><a href="#webhooks">Webhooks</a></nav></header>
<main>
{"".join(notes)}
<section id="connections"><h2>Connections</h2>{connections}</section>
<section id="syncs"><h2>Syncs</h2>{syncs}</section>
<section id="dead-letters"><h2>Dead letters</h2>{letters_note}{letters}</section>
<section id="webhooks"><h2>Recent webhooks</h2>{webhooks}</section>
</main></body></html>
"""
