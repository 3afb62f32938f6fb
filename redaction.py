"""What counts as a secret when the fleet shows something, and how it is masked.

One rule for every place that displays data a caller or an operator gave: dead letters
(:mod:`tasks.deadletters`), URLs in messages, ``doctor`` and logs (:func:`settings.hide_password`).

* A *name* looks secret (:func:`is_secret_name`) when, in any case style (``clientSecret``,
  ``refresh_token``, ``secret_key``, ``X-Api-Key``, ``APIKEY``), it names a secret, password,
  passcode, credential, API or private key, signature, cookie, authorisation, a token, a session
  id (``session_id``, ``JSESSIONID``), a client assertion or a verifier (``code_verifier``), or
  a code that proves something (``auth_code``, ``device_code``, ``security_code``); names that
  merely mention tokens as positions or counts (``page_token``, ``nextPageToken``,
  ``max_tokens``), keys that are not secrets (``idempotency_key``, ``primary_key``) and codes
  that classify (``zip_code``, ``country_code``, ``error_code``, ``status_code``) do not.
* ``code`` alone is a secret only as a URL's query parameter, where it is an OAuth
  authorisation code (``?code=...&state=...``); as a key (a dead letter's params, an error
  body) it is far more often a status or an error code, and stays visible. ``state`` is not a
  secret.
* A *URL* is shown with its user-info masked (``user:***@``, or ``***@`` for a user alone, which
  may be a token) and the values of secret-looking query parameters masked (``?password=***``,
  ``?code=***``).

This module imports nothing of the fleet's, so every layer may use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["MASK", "REDACTED", "hide_urls", "is_secret_name", "mask_url", "redact"]

#: What replaces a masked part of a URL.
MASK = "***"
#: What replaces a value under a secret-looking name.
REDACTED = "[redacted]"

# A secret wherever the word stands in the name.
_SECRET_WORDS = frozenset(
    {
        "secret", "secrets", "password", "passwords", "passwd", "passphrase", "pwd",
        "credential", "credentials", "cookie", "cookies", "authorization", "signature",
        "apikey", "apikeys", "privatekey", "secretkey", "accesstoken", "refreshtoken",
        "authtoken", "bearer", "jwt", "otp", "passcode", "passcodes",
    }
)  # fmt: skip
# A secret when the name, its words run together, ends with it: "clientSecret", "JSESSIONID",
# "PHPSESSID", "client_assertion", "code_verifier", "oauth_verifier".
_SECRET_ENDINGS = (
    "apikey", "secret", "password", "privatekey", "sessionid", "sessid", "assertion", "verifier",
    "authcode",
)  # fmt: skip
# A secret when the name ends with it: "db_pass", "basic_auth", "sig", "access_token".
_SECRET_LAST = frozenset({"pass", "auth", "sig", "token", "tokens", "key", "keys"})
# "key" names a secret only after one of these (or alone): "api_key", not "idempotency_key".
_KEY_QUALIFIERS = frozenset(
    {"api", "private", "secret", "access", "auth", "client", "signing", "encryption",
     "session", "master", "app", "license", "subscription", "consumer", "x"}
)  # fmt: skip
# "code" names a secret only after one of these: "device_code", not "zip_code" or "error_code".
_CODE_QUALIFIERS = frozenset(
    {"auth", "oauth", "authorization", "device", "verification", "security", "mfa", "otp",
     "totp", "recovery", "backup"}
)  # fmt: skip
# "token" is a position or a count after one of these: "page_token", "max_tokens".
_NOT_SECRET_TOKEN = frozenset(
    {"page", "next", "prev", "previous", "pagination", "continuation", "sync", "cursor",
     "max", "min", "num", "total", "count", "prompt", "completion", "output", "input",
     "sequence", "resume", "start", "end"}
)  # fmt: skip
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


def _words(name: str) -> list[str]:
    return [w for w in _SPLIT.split(_CAMEL.sub("_", name).lower()) if w]


def is_secret_name(name: str, *, query: bool = False) -> bool:
    """True when ``name`` (a key, a param, a header or a query parameter) looks like it holds a
    secret, in any case style.

    Args:
        name: the name.
        query: ``name`` is a URL's query parameter, where ``code`` alone is an OAuth
            authorisation code (elsewhere it is a status or error code, and not a secret).
    """
    words = _words(name)
    if not words:
        return False
    if query and words in (["code"], ["codes"]):
        return True
    if any(w in _SECRET_WORDS for w in words):
        return True
    # Compound words without separators: "XAPIKEY", "clientsecret".
    compact = "".join(words)
    if compact.endswith(_SECRET_ENDINGS):
        return True
    last = words[-1]
    if last in ("code", "codes"):
        return len(words) > 1 and words[-2] in _CODE_QUALIFIERS
    if last not in _SECRET_LAST:
        return False
    before = words[:-1]
    if last in ("key", "keys"):
        return not before or before[-1] in _KEY_QUALIFIERS
    if last in ("token", "tokens"):
        return not any(w in _NOT_SECRET_TOKEN for w in before)
    return True


def redact(value: Any) -> Any:
    """A JSON-friendly copy of ``value`` with every entry under a secret-looking key masked, at
    any depth; URLs in strings are masked as :func:`mask_url` does."""
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret_name(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return hide_urls(value)
    return value


def _mask_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, sep, _value = pair.partition("=")
        if sep and is_secret_name(unquote_plus(name), query=True):
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return "&".join(pairs)


def mask_url(url: str) -> str:
    """``url`` with the credentials of its user-info and of its query string masked.

    A URL that does not parse is shown as a placeholder: it may be a password with a colon.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unparsable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{MASK}@{hostport}"
    query = _mask_query(parts.query) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def hide_urls(text: str) -> str:
    """``text`` (an error message, a log line) with every URL in it masked by :func:`mask_url`."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
