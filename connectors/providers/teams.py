"""Microsoft Teams: the ``teams`` connector (Microsoft Graph) and ``teams_webhook`` (incoming
webhooks), declared in ``connectors/manifests/teams.yaml`` and ``teams_webhook.yaml``.

The manifests say nearly everything; the hooks here hold what data cannot:

- :class:`TeamsHooks`: the OAuth endpoints live on another host than the API
  (``login.microsoftonline.com``), which a connection may move (config ``login_url``: national
  clouds, or a test's emulator); the tenant in their path defaults to ``common`` for the
  authorisation-code flow but must be named for client credentials (Microsoft refuses
  ``common`` there); and client credentials ask for the app's ``/.default`` scope, not the
  delegated scopes the code flow asks for.
- :class:`TeamsWebhookHooks`: a webhook answers ``1`` (Office 365 connectors) or ``202`` with
  no body (Workflows), neither of them JSON worth returning; and a throttled request is
  answered ``200`` with a text naming the 429 ("Connectors do not throw 429s"), which no
  status or JSON rule can see.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.http import NOT_APPLIED_STATUSES
from spark_integrations.connectors.manifest import declared
from spark_integrations.connectors.oauth import OAuthClient
from spark_integrations.errors import FatalError, RateLimitedError, RetriableError, UsageError

__all__ = ["APP_SCOPE", "LOGIN_URL", "Teams", "TeamsHooks", "TeamsWebhook", "TeamsWebhookHooks"]

#: Where the Microsoft identity platform answers (config ``login_url`` moves it).
LOGIN_URL = "https://login.microsoftonline.com"
#: The scope of a client-credentials token: the application permissions an admin granted.
APP_SCOPE = "https://graph.microsoft.com/.default"
#: Tenants that name no directory: fine for signing a user in, refused for client credentials.
GENERIC_TENANTS = ("common", "organizations", "consumers")
# "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429"
_DELIVERY_ERROR = re.compile(r"returned HTTP error (\d{3})")
_QUOTE = 160


class TeamsHooks(Connector):
    """Hooks of the ``teams`` connector: where its OAuth endpoints are, and with what scope."""

    @classmethod
    def oauth_client(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> OAuthClient:
        """The identity platform's endpoints under ``login_url`` with the connection's tenant
        in their path, and ``.default`` as the scope of client credentials."""
        filled = dict(config)
        app_only = filled.get("grant_type") == "client_credentials"
        tenant = filled.get("tenant")
        if app_only and (not tenant or tenant in GENERIC_TENANTS):
            raise UsageError(
                "a teams connection using client credentials needs config tenant (the "
                "directory's ID or domain, such as contoso.onmicrosoft.com); Microsoft refuses "
                f"{tenant or 'common'!r} for them."
            )
        filled.setdefault("tenant", "common")
        login = str(filled.get("login_url") or LOGIN_URL).rstrip("/")
        filled.setdefault("authorize_url", login + "/{tenant}/oauth2/v2.0/authorize")
        filled.setdefault("token_url", login + "/{tenant}/oauth2/v2.0/token")
        if app_only and "scopes" not in filled:
            filled["scopes"] = [APP_SCOPE]
        return super().oauth_client(filled, secrets)


class TeamsWebhookHooks(Connector):
    """Hooks of the ``teams_webhook`` connector: how its answers are read."""

    def judge(self, response: requests.Response) -> None:
        """A 2xx whose text reports a failed delivery is that failure: a 429 is throttling, a
        5xx a delivery worth retrying, anything else a refusal."""
        text = response.text if response.content else ""
        found = _DELIVERY_ERROR.search(text)
        if found is None:
            return
        status = int(found.group(1))
        quoted = " ".join(text.split())[:_QUOTE]
        if status == 429:
            raise RateLimitedError(
                f"Teams throttled the webhook ({quoted}).",
                connector=self.name,
                status=response.status_code,
                response=response,
            )
        if status >= 500:
            # As for any 5xx but a 503: the message may have been delivered (a post takes no
            # idempotency key, so it is then not sent again blindly).
            raise RetriableError(
                f"Teams could not deliver the webhook's message ({quoted}).",
                connector=self.name,
                status=response.status_code,
                response=response,
                maybe_applied=status not in NOT_APPLIED_STATUSES,
            )
        raise FatalError(
            f"Teams refused the webhook's message ({quoted}).",
            connector=self.name,
            status=response.status_code,
            response=response,
        )

    def parse_action(self, action: Action, response: requests.Response) -> Any:
        """What a post returns: its status, and the webhook's text when it says something
        (``1``); never the URL, which is the secret."""
        result: dict[str, Any] = {"ok": True, "status": response.status_code}
        text = response.text.strip() if response.content else ""
        if text:
            result["response"] = text[:_QUOTE]
        return result


Teams = declared(__file__, "teams.yaml")
TeamsWebhook = declared(__file__, "teams_webhook.yaml")
