"""Where a connection may send its requests: the outbound URL policy.

A connection's ``base_url``, ``token_url`` and ``authorize_url``:

* use ``https://``; plain ``http://`` only to a loopback host (``localhost`` itself, not names
  under ``.localhost``; ``127.0.0.0/8``; ``::1``: the sandbox, tests) or to a host the operator
  lists in ``SPARK_INTEGRATIONS_ALLOW_HTTP_HOSTS``;
* hold no user-info (credentials are secrets, never part of a URL) and no fragment; a base URL
  holds no query either (paths are appended to it);
* hold no whitespace or control characters.

Next-page links are followed on the connection's own origin only (:func:`same_origin`, used by
:mod:`connectors.pagination`).

The hosts allowed over http are the process's (:func:`allow_http_hosts`, set from the settings by
each entry point); connectors never read the environment themselves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import urlsplit

from spark_integrations.constants import ENV_PREFIX
from spark_integrations.errors import UsageError

__all__ = [
    "allow_http_hosts",
    "allowed_http_hosts",
    "check_url",
    "is_loopback",
    "same_origin",
    "url_problem",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_http_hosts: frozenset[str] = frozenset()


def allow_http_hosts(hosts: Iterable[str]) -> None:
    """Set the hosts this process may reach over plain http besides loopback (the settings'
    ``allow_http_hosts``)."""
    global _http_hosts
    _http_hosts = frozenset(h.lower().rstrip(".") for h in hosts)


def allowed_http_hosts() -> frozenset[str]:
    """The hosts this process may reach over plain http besides loopback."""
    return _http_hosts


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` itself and loopback IP literals (``127.0.0.0/8``, ``::1``).

    Names under ``.localhost`` (and ``localhost.``, a name to look up in DNS) are not: glibc
    answers them from DNS unless systemd-resolved handles them, so ``http://x.localhost``
    could carry a client secret in cleartext to a real host.
    """
    if not host:
        return False
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(
    url: Any, *, http_hosts: Collection[str] | None = None, query: bool = True
) -> str | None:
    """What keeps ``url`` from being a connection's endpoint, as the end of a sentence, or
    ``None`` when it may be used.

    Args:
        url: the URL.
        http_hosts: hosts allowed over http besides loopback (default: the process's).
        query: whether a query string is allowed (not in a base URL, which paths extend).
    """
    if not isinstance(url, str) or not url:
        return "must be a URL"
    if _UNSAFE.search(url):
        return "must not hold spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an https:// URL"
    if "@" in parts.netloc:
        return "must not hold a user name or password (give credentials as secrets)"
    if "#" in url:
        return "must not hold a fragment (#...)"
    if not query and "?" in url:
        return "must not hold a query string (?...)"
    if port == 0:
        return "is not a valid URL"
    allowed = _http_hosts if http_hosts is None else http_hosts
    if parts.scheme == "http" and not (is_loopback(parts.hostname) or parts.hostname in allowed):
        return (
            "must use https:// (plain http:// only to a loopback host or a host listed in "
            f"{ENV_PREFIX}ALLOW_HTTP_HOSTS)"
        )
    return None


def check_url(key: str, url: Any, *, http_hosts: Collection[str] | None = None) -> None:
    """Refuse a URL a connection's config may not hold, in one sentence naming the key.

    Raises:
        UsageError: ``config KEY must use https:// ...``.
    """
    problem = url_problem(url, http_hosts=http_hosts, query=key != "base_url")
    if problem is not None:
        raise UsageError(f"config {key} {problem}.")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").rstrip("."), parts.port or _DEFAULT_PORTS.get(scheme)


def same_origin(url: str, other: str) -> bool:
    """True when both URLs have the same scheme, host and port (RFC 6454) and ``url`` carries
    no user-info; False for anything that does not parse."""
    try:
        if "@" in urlsplit(url).netloc:
            return False
        return _origin(url) == _origin(other)
    except ValueError:
        return False
