"""What the running gateway's secrets area holds, filled in at startup.

The holder exists from application setup on (so the proxy chain can be built with it before
the stores open); its members are set once the startup context has opened them, and a stage
or handler that finds them unset fails closed (503).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.secrets.broker import Broker
from gateway.secrets.service import SecretService
from gateway.secrets.webhooks import WebhookVerifier


@dataclass
class SecretsRuntime:
    """The secrets service, the resolve broker and the webhook verifier of one process."""

    service: SecretService | None = None
    broker: Broker | None = None
    webhooks: WebhookVerifier | None = None


SECRETS = web.AppKey("gateway_secrets", SecretsRuntime)
