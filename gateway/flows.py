"""The OAuth 2.0 connect flow over the store: start, authorize, callback.

One flow is one ``oauth_flows`` row, and each step moves it on exactly once:

1. ``connect`` calls :meth:`ConnectFlows.start`: a row ``issued`` and a link signed over its id,
   valid for :data:`LINK_TTL`.
2. The link's first visit (:meth:`ConnectFlows.authorize`) claims the row (``issued`` →
   ``authorizing``, one ``UPDATE`` guarded by the old status), keeps an encrypted PKCE verifier
   and the hash of a fresh ``state``, and answers the provider's authorisation URL.
3. The provider's redirect (:meth:`ConnectFlows.callback`) claims the state once (the hash is
   cleared in a guarded ``UPDATE``), exchanges the code outside any transaction, then stores the
   tokens and ends the flow ``succeeded`` in one transaction, or ends it ``failed`` with the
   provider's error, which ``connect`` reports.

Every refusal is a :class:`FlowRefusedError` carrying the HTTP status of the page to answer.
A link or a state that is unsigned, tampered, expired, unknown or used is refused before anything
is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.oauth import OAuthClient
from spark_integrations.errors import (
    AuthenticationError,
    IntegrationError,
    ProviderError,
    SecretError,
    StoreError,
    UsageError,
)
from spark_integrations.gateway.links import (
    Signer,
    authorize_link,
    pkce_pair,
    provider_authorize_url,
    state_hash,
)
from spark_integrations.store.connections import connection_secrets, get_connection
from spark_integrations.store.crypto import SecretBox
from spark_integrations.store.flows import (
    abandon_flow,
    begin_authorization,
    claim_link,
    end_authorization,
    flow_by_state,
    flow_status,
    get_flow,
    issue_flow,
    use_state,
)
from spark_integrations.store.models import Connection
from spark_integrations.store.tokens import save_connected_token
from spark_integrations.store.types import utcnow

__all__ = [
    "LINK_TTL",
    "STATE_TTL",
    "ConnectFlows",
    "Connected",
    "FlowRefusedError",
    "StartedFlow",
    "callback_url",
]

#: How long a printed link may be opened.
LINK_TTL = timedelta(minutes=10)
#: How long the provider may take to send the person back with a code.
STATE_TTL = timedelta(minutes=10)
#: Longest query values accepted; anything longer was not made by the fleet or a provider.
_MAX_FLOW_ID = 64
_MAX_SIGNATURE = 100
_MAX_CODE = 4096
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")
_UNPRINTABLE = re.compile(r"[^ -~]+")

SessionFactory = Callable[[], AbstractContextManager[Session]]


class FlowRefusedError(UsageError):
    """Raised when the gateway refuses a link or a callback; carries the page to answer with."""

    def __init__(
        self, message: str, *, status: int = 400, title: str = "Refused", outcome: str = "refused"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        #: ``refused`` when nothing was written, ``failed`` when the flow was ended failed.
        self.outcome = outcome


@dataclass(frozen=True)
class StartedFlow:
    """A flow ``connect`` started: the link to print and what to wait for."""

    flow_id: str
    connection_id: str
    connection_name: str
    url: str
    expires_at: datetime


@dataclass
class _Claim:
    """A claimed state: the flow, and what its exchange needs or why it failed."""

    flow_id: str
    connection_id: str
    redirect_uri: str
    client: OAuthClient | None = None
    verifier: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class Connected:
    """A callback that stored its tokens."""

    connection_id: str
    connection_name: str


def callback_url(public_url: str) -> str:
    """The redirect URI the provider sends the person back to."""
    return public_url.rstrip("/") + "/oauth/callback"


def _provider_refusal(params: Mapping[str, str]) -> str:
    """One sentence for an ``error`` callback; only a well-formed code and printable text."""
    code = params.get("error", "")
    if not _ERROR_CODE.fullmatch(code):
        code = "unknown_error"
    description = _UNPRINTABLE.sub(" ", params.get("error_description", "")).strip()[:200]
    detail = f"{code}: {description.rstrip('.')}" if description else code
    return f"the provider refused the authorisation ({detail})."


class ConnectFlows:
    """The connect flow's steps over one store, box, signer and public URL."""

    def __init__(
        self,
        sessions: SessionFactory,
        box: SecretBox,
        signer: Signer,
        public_url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Bind the steps to a store.

        Args:
            sessions: opens one store transaction (committed on leaving, rolled back on error).
            box: decrypts the connection's secrets, encrypts the PKCE verifier.
            signer: signs and checks links and states.
            public_url: the gateway's external URL (links and the redirect URI).
            clock: the current time, timezone-aware (tests move it).
        """
        self.sessions = sessions
        self.box = box
        self.signer = signer
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    # --- connect ------------------------------------------------------------------------------

    def _client(self, conn: Connection) -> OAuthClient:
        connector = get_connector(conn.provider)
        client = connector.oauth_client(conn.config, connection_secrets(self.box, conn))
        if client.grant_type == "client_credentials":
            raise UsageError(
                f"connection {conn.name} uses the client-credentials grant; it needs no connect."
            )
        return client

    def start(self, connection_id: str) -> StartedFlow:
        """Create a flow for a connection that can be authorised, and sign its link."""
        # Whole seconds: the link carries the expiry as a UNIX time, and the row agrees with it.
        expires = int((self.clock() + LINK_TTL).timestamp())
        with self.sessions() as session:
            conn = get_connection(session, connection_id)
            self._client(conn)
            flow_id = issue_flow(session, conn.id, datetime.fromtimestamp(expires, UTC))
            name = conn.name
        signature = self.signer.sign_link(connection_id, flow_id, expires)
        return StartedFlow(
            flow_id=flow_id,
            connection_id=connection_id,
            connection_name=name,
            url=authorize_link(self.public_url, connection_id, flow_id, expires, signature),
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    def status(self, flow_id: str) -> tuple[str, str | None] | None:
        """A flow's status and error, or None when it is gone (its connection was removed)."""
        with self.sessions() as session:
            return flow_status(session, flow_id)

    def abandon(self, flow_id: str, reason: str) -> bool:
        """End an unfinished flow ``failed``, so a late callback stores nothing.

        Returns False when the flow had ended already (its outcome stands).
        """
        with self.sessions() as session:
            return abandon_flow(session, flow_id, reason, self.clock())

    # --- the gateway's authorize endpoint -------------------------------------------------------

    def _check_link(self, connection_id: str, params: Mapping[str, str]) -> tuple[str, int]:
        flow_id, exp_raw, signature = (params.get(k, "") for k in ("flow", "exp", "sig"))
        if not flow_id or not exp_raw or not signature:
            raise FlowRefusedError(
                "This link is not signed; use the link `spark-integrations connect` printed.",
                title="Link refused",
            )
        if (
            len(flow_id) > _MAX_FLOW_ID
            or len(signature) > _MAX_SIGNATURE
            or not exp_raw.isascii()
            or not exp_raw.isdigit()
            or len(exp_raw) > 12
        ):
            raise FlowRefusedError("This link is malformed.", title="Link refused")
        expires = int(exp_raw)
        if not self.signer.link_ok(connection_id, flow_id, expires, signature):
            raise FlowRefusedError(
                "This link's signature does not match; it was altered or not made by this fleet.",
                status=403,
                title="Link refused",
            )
        if expires <= self.clock().timestamp():
            raise FlowRefusedError(
                "This link has expired; run `spark-integrations connect` again.",
                status=410,
                title="Link expired",
            )
        return flow_id, expires

    def authorize(self, connection_id: str, params: Mapping[str, str]) -> str:
        """Accept a signed link once and answer the provider's authorisation URL."""
        flow_id, _ = self._check_link(connection_id, params)
        now = self.clock()
        failure: str | None = None
        with self.sessions() as session:
            flow = get_flow(session, flow_id)
            if flow is None or flow.connection_id != connection_id:
                raise FlowRefusedError(
                    "This link names no pending authorisation (was the connection removed?).",
                    status=404,
                    title="Unknown link",
                )
            # The link's signed expiry is the row's, checked above; the guard repeats it.
            if not claim_link(session, flow_id, connection_id, now):
                raise FlowRefusedError(
                    "This link was used already; run `spark-integrations connect` again.",
                    status=409,
                    title="Link used",
                )
            conn = get_connection(session, connection_id)
            try:
                client = self._client(conn)
            except (UsageError, SecretError) as exc:
                failure = str(exc)
                client = None
            if client is None:
                end_authorization(session, flow_id, now, error=failure)
                target = ""
            else:
                verifier, challenge = pkce_pair()
                state = self.signer.new_state()
                redirect_uri = callback_url(self.public_url)
                begin_authorization(
                    session,
                    flow_id,
                    state_hash=state_hash(state),
                    state_expires_at=now + STATE_TTL,
                    code_verifier=self.box.encrypt(verifier),
                    redirect_uri=redirect_uri,
                )
                target = provider_authorize_url(client, redirect_uri, state, challenge)
        if failure is not None:
            raise FlowRefusedError(failure, title="Cannot authorise", outcome="failed")
        return target

    # --- the gateway's callback endpoint --------------------------------------------------------

    def callback(self, params: Mapping[str, str]) -> Connected:
        """Claim the state once, exchange the code, store the tokens; or end the flow failed."""
        state = params.get("state", "")
        if not state:
            raise FlowRefusedError("This callback carries no state.", title="Callback refused")
        if not self.signer.state_ok(state):
            raise FlowRefusedError(
                "This callback's state was not issued by this fleet.", title="Callback refused"
            )
        code = params.get("code", "")
        if len(code) > _MAX_CODE:
            raise FlowRefusedError("This callback's code is malformed.", title="Callback refused")
        claim = self._claim(state_hash(state), params, code)
        if claim.failure is not None or claim.client is None:
            raise FlowRefusedError(
                claim.failure or "no OAuth client.", title="Not connected", outcome="failed"
            )
        return self._exchange(claim, code)

    def _claim(self, hashed: str, params: Mapping[str, str], code: str) -> _Claim:
        """Use the state up (once), and gather what the exchange needs; or end the flow failed."""
        now = self.clock()
        refused = FlowRefusedError(
            "This authorisation was completed already or has expired; "
            "run `spark-integrations connect` again.",
            title="Callback refused",
        )
        with self.sessions() as session:
            flow = flow_by_state(session, hashed)
            if flow is None:
                raise refused
            claim = _Claim(flow.id, flow.connection_id, flow.redirect_uri or "")
            if "error" in params or not code:
                claim.failure = (
                    _provider_refusal(params)
                    if "error" in params
                    else "the provider answered with neither a code nor an error."
                )
            else:
                try:
                    claim.client = self._client(get_connection(session, flow.connection_id))
                    if flow.code_verifier is not None:
                        claim.verifier = self.box.decrypt(flow.code_verifier)
                except (UsageError, SecretError) as exc:
                    claim.failure = str(exc)
            # Clearing the hash uses the state up; with a code the flow stays ``authorizing``
            # while the code is exchanged, outside this transaction.
            if not use_state(session, flow.id, hashed, now, failure=claim.failure):
                raise refused
        return claim

    def _exchange(self, claim: _Claim, code: str) -> Connected:
        assert claim.client is not None
        flow_id, connection_id = claim.flow_id, claim.connection_id
        requested_at = self.clock()
        try:
            answer = claim.client.endpoint().exchange_code(
                code,
                redirect_uri=claim.redirect_uri or callback_url(self.public_url),
                code_verifier=claim.verifier,
            )
        except ProviderError as exc:
            self._fail(flow_id, str(exc))
            raise FlowRefusedError(
                str(exc),
                status=400 if isinstance(exc, AuthenticationError) else 502,
                title="Not connected",
                outcome="failed",
            ) from None
        try:
            with self.sessions() as session:
                # The flow first: a flow `connect` gave up on meanwhile stores no token.
                if not end_authorization(session, flow_id, self.clock()):
                    raise FlowRefusedError(
                        "This authorisation was abandoned (connect stopped waiting); "
                        "run `spark-integrations connect` again.",
                        status=409,
                        title="Not connected",
                    )
                save_connected_token(
                    session, self.box, connection_id, answer, requested_at=requested_at
                )
                name = get_connection(session, connection_id).name
        except (FlowRefusedError, StoreError):
            raise
        except IntegrationError as exc:
            self._fail(flow_id, str(exc))
            raise FlowRefusedError(
                str(exc), status=502, title="Not connected", outcome="failed"
            ) from None
        return Connected(connection_id, name)

    def _fail(self, flow_id: str, error: str) -> None:
        with self.sessions() as session:
            end_authorization(session, flow_id, self.clock(), error=error)
