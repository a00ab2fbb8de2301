"""Opening the same stores and services as the running gateway, for CLI commands."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.identity.passwords import PasswordHasher
from gateway.identity.service import IdentityService
from gateway.keyring import derive_key
from gateway.sessions.service import SessionService
from gateway.storage.factory import Stores, open_stores
from gateway.storage.state import ensure_master_key, open_state_dir


@dataclass(frozen=True)
class CliServices:
    """What the bootstrap and operator commands act through."""

    config: GatewayConfig
    stores: Stores
    identity: IdentityService
    sessions: SessionService


@contextlib.asynccontextmanager
async def open_cli_services(config: GatewayConfig) -> AsyncIterator[CliServices]:
    """The configured stores and the services over them, closed on exit.

    Changes reach running gateways through the change bus when Redis is configured, and
    within their cache bound (1 s) on the embedded default.
    """
    state = open_state_dir(config.state_dir)
    async with open_stores(config, state) as stores:
        hasher = PasswordHasher()
        sessions = SessionService(
            stores.sessions,
            stores.bus,
            config.cookie,
            derive_key(ensure_master_key(state), "csrf"),
        )
        try:
            yield CliServices(config, stores, IdentityService(stores.identity, hasher), sessions)
        finally:
            sessions.close()
            await hasher.close()
