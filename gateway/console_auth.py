"""Who may open the operator's console, and proof that a replay was asked for from it.

**Authentication.** In server mode the console is never open by default: it takes the
credentials Flower takes (``SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH``, ``user:password``, several
separated by commas as Flower reads them) as HTTP Basic, or ``Authorization: Bearer`` with
``SPARK_INTEGRATIONS_CONSOLE_TOKEN``. With neither configured it answers 403 naming both
variables. In embedded mode it answers loopback clients only, without credentials, and only
under a loopback host name or, when the public URL is plain http, the public URL's (so a site
whose name was rebound to 127.0.0.1 cannot read it from the operator's own browser). A request
a proxy or tunnel on this machine relays (ngrok, cloudflared, a reverse proxy) comes from
loopback too: one carrying a forwarding header (``Forwarded``, ``X-Forwarded-For``,
``X-Forwarded-Host``, ``X-Real-IP``), or naming an https public URL's host (the gateway serves
plain http, so only a TLS proxy in front answers there), is refused. Every comparison is
constant-time, and every configured credential is compared, so the time taken tells nothing
about which one matched.

**The one write** (replaying a dead letter) needs, besides the credentials:

* a token from the page's form: ``EXPIRES.NONCE.MAC``, the MAC an HMAC-SHA256 over the
  operator's identity (a digest of the credentials presented, or "loopback"), the letter's id,
  the letter's ``replayed_at`` as the page showed it, the nonce and the expiry, under a key
  derived from the fleet's secret keys for this purpose alone (the newest signs, every key
  verifies). Another operator's token, another letter's, an edited one, or one older than
  :data:`CSRF_TTL` is refused;
* the request's ``Origin`` (or, without one, its ``Referer``) naming the gateway itself (the
  host asked for, or the public URL's origin), and ``Sec-Fetch-Site``, when sent,
  ``same-origin``.

The console sets no cookie but a one-minute flash message (``SameSite=Strict``, ``HttpOnly``),
which proves nothing; it is MACed like the tokens (a cookie planted by a neighbouring site is not
shown) and only ever shown escaped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from spark_integrations.constants import ENV_PREFIX
from spark_integrations.gateway.links import derive_key
from spark_integrations.settings import Settings

__all__ = [
    "CSRF_TTL",
    "ConsoleAuth",
    "ConsoleRefusal",
    "Operator",
    "same_origin",
]

#: Seconds a replay form stays valid after the page was shown.
CSRF_TTL = 1800
_CSRF_INFO = b"spark-integrations/console-csrf/v1"
_MAX_TOKEN = 200
REALM = "spark-integrations console"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Headers a proxy or tunnel adds to what it relays: their request is not this machine's own.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


@dataclass(frozen=True)
class Operator:
    """Whoever was let in; ``identity`` binds replay tokens to the credentials presented."""

    identity: str
    how: str


class ConsoleRefusal(Exception):
    """Raised when a request may not open the console or replay a dead letter."""

    def __init__(self, status: int, message: str, challenge: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.challenge = challenge


def _digest(kind: str, credential: bytes) -> str:
    return kind + ":" + hashlib.sha256(credential).hexdigest()


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _host_name(host_header: str) -> str | None:
    try:
        return urlsplit("//" + host_header).hostname
    except ValueError:
        return None


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL, or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def same_origin(request: Request, public_url: str) -> bool:
    """True when a state-changing request comes from a page of the gateway itself."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    claimed = request.headers.get("origin")
    if claimed is None:
        claimed = request.headers.get("referer")
    if not claimed:
        return False
    given = _origin(claimed)  # "null" (a sandboxed or privacy-stripped origin) is None here
    if given is None:
        return False
    own = {_origin(public_url)}
    host = request.headers.get("host")
    if host:
        own.add(_origin(f"{request.url.scheme}://{host}"))
    return given in own


class ConsoleAuth:
    """The console's gate: authentication per request, replay tokens per form."""

    def __init__(self, settings: Settings) -> None:
        """Read the credentials and derive the token keys from ``settings``."""
        self.embedded = settings.embedded
        self.public_url = settings.public_url
        auth = settings.flower_basic_auth or ""
        self._basic = tuple(entry.encode() for entry in auth.split(",") if entry)
        token = settings.operations.console_token
        self._bearer = token.encode() if token else None
        self._keys = tuple(derive_key(k, _CSRF_INFO) for k in settings.secret_keys)
        public_host = _origin(settings.public_url)
        # An https public URL is a TLS proxy's or a tunnel's: the gateway itself serves http.
        direct = public_host is not None and public_host[0] == "http"
        self._hosts = LOOPBACK_NAMES | ({public_host[1]} if public_host and direct else set())
        #: Unix time now; tests move it.
        self.clock: Callable[[], float] = time.time

    def __repr__(self) -> str:
        return "ConsoleAuth(<credentials hidden>)"

    # -- who --------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Operator:
        """The operator behind ``request``.

        Raises:
            ConsoleRefusal: 401 (credentials missing or wrong, with the challenge to send),
                403 (a client the console never answers, or nothing configured to open it).
        """
        if self.embedded:
            return self._loopback(request)
        if not self._basic and self._bearer is None:
            raise ConsoleRefusal(
                403,
                f"The console is closed: set {ENV_PREFIX}CONSOLE_TOKEN (a bearer token) or "
                f"{ENV_PREFIX}FLOWER_BASIC_AUTH (user:password) to open it.",
            )
        challenge = tuple(
            f'{kind} realm="{REALM}"' + (', charset="UTF-8"' if kind == "Basic" else "")
            for kind, on in (("Basic", bool(self._basic)), ("Bearer", self._bearer is not None))
            if on
        )
        header = request.headers.get("authorization", "")
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "basic" and self._basic and value:
            try:
                given = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                given = b""
            matches = [hmac.compare_digest(given, entry) for entry in self._basic]
            if given and any(matches):
                return Operator(_digest("basic", given), "basic")
        elif scheme == "bearer" and self._bearer is not None and value:
            given = value.encode("utf-8", "surrogateescape")
            if hmac.compare_digest(given, self._bearer):
                return Operator(_digest("bearer", given), "bearer")
        wanted = [
            text
            for text, on in (
                (f"the {ENV_PREFIX}FLOWER_BASIC_AUTH credentials (HTTP Basic)", self._basic),
                (f"the {ENV_PREFIX}CONSOLE_TOKEN token (Bearer)", self._bearer),
            )
            if on
        ]
        message = (
            "The console refused those credentials."
            if header
            else f"The console needs {' or '.join(wanted)}."
        )
        raise ConsoleRefusal(401, message, challenge)

    def _loopback(self, request: Request) -> Operator:
        client = request.client.host if request.client else None
        if not _is_loopback(client):
            raise ConsoleRefusal(
                403, "In embedded mode the console answers this machine's own clients only."
            )
        if any(header in request.headers for header in FORWARDING_HEADERS):
            raise ConsoleRefusal(
                403,
                "In embedded mode the console answers this machine's own clients only, not "
                "what a proxy or tunnel relays.",
            )
        name = _host_name(request.headers.get("host", ""))
        if name is None or name.lower() not in self._hosts:
            raise ConsoleRefusal(
                403,
                "The console answers under 127.0.0.1, localhost or the public URL's host (an "
                "http one) only.",
            )
        return Operator("loopback", "loopback")

    # -- the flash message ------------------------------------------------------------------

    def _flash_mac(self, key: bytes, text: str) -> bytes:
        mac = hmac.new(key, b"flash\x00" + text.encode("utf-8", "surrogateescape"), "sha256")
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")

    def seal_flash(self, text: str) -> str:
        """``text`` with its MAC, for the flash cookie: only the console's own words are shown."""
        return f"{self._flash_mac(self._keys[0], text).decode()}.{text}"

    def open_flash(self, sealed: str) -> str | None:
        """The text of a sealed flash message, or None when the console did not write it."""
        signature, dot, text = sealed.partition(".")
        given = signature.encode("utf-8", "surrogateescape")
        if not dot or not any(
            [hmac.compare_digest(self._flash_mac(k, text), given) for k in self._keys]
        ):
            return None
        return text

    # -- replay tokens ----------------------------------------------------------------------

    @staticmethod
    def _message(operator: Operator, letter_id: str, seen: str, nonce: str, expires: int) -> bytes:
        return json.dumps(
            [operator.identity, letter_id, seen, nonce, expires], separators=(",", ":")
        ).encode("utf-8", "surrogateescape")

    def replay_token(self, operator: Operator, letter_id: str, seen: str) -> str:
        """A token for the form that replays ``letter_id`` (``seen``: its ``replayed_at``
        as the page shows it, ``""`` when never replayed)."""
        expires = int(self.clock() + CSRF_TTL)
        nonce = secrets.token_urlsafe(16)
        mac = hmac.new(
            self._keys[0], self._message(operator, letter_id, seen, nonce, expires), "sha256"
        )
        signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
        return f"{expires}.{nonce}.{signature}"

    def check_replay_token(
        self,
        operator: Operator,
        letter_id: str,
        seen: str,
        token: str,
    ) -> None:
        """Accept the token of a replay form, or refuse it.

        Raises:
            ConsoleRefusal: 403, the token missing, not made here for this operator, letter
                and state, or expired.
        """
        parts = token.split(".") if token and len(token) <= _MAX_TOKEN else []
        if len(parts) != 3 or not parts[0].isdigit():
            raise ConsoleRefusal(
                403, "The replay was refused: the form's token is missing or malformed."
            )
        expires, nonce, signature = int(parts[0]), parts[1], parts[2]
        message = self._message(operator, letter_id, seen, nonce, expires)
        given = signature.encode("utf-8", "surrogateescape")
        expected = [
            base64.urlsafe_b64encode(hmac.new(k, message, "sha256").digest()).rstrip(b"=")
            for k in self._keys
        ]
        if not any([hmac.compare_digest(e, given) for e in expected]):
            raise ConsoleRefusal(
                403, "The replay was refused: the form's token was not made for this request."
            )
        if expires < self.clock():
            raise ConsoleRefusal(
                403, "The replay was refused: the page is too old; reload the console."
            )
