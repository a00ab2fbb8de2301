"""Every typed key under which the composition root stores services in the application."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway.config import GatewayConfig
from gateway.identity.assertion import AssertionSigner
from gateway.identity.passwords import PasswordHasher
from gateway.identity.signing_keys import KeyRing
from gateway.pipeline.stages.base import Stage
from gateway.policy.engine import PolicyEngine
from gateway.policy.service import TenantRuleService
from gateway.proxy.forward import Forwarder
from gateway.proxy.routes import RouteTable
from gateway.storage.factory import Stores
from gateway.storage.ports import ChangeBus
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.state import StateDir
from gateway.web.health import Readiness

CONFIG = web.AppKey("gateway_config", GatewayConfig)
STATE = web.AppKey("gateway_state", StateDir)
DATABASE = web.AppKey("gateway_database", SqliteDatabase)
ROUTES = web.AppKey("gateway_routes", RouteTable)
UPSTREAM_SESSION = web.AppKey("gateway_upstream_session", aiohttp.ClientSession)
FORWARDER = web.AppKey("gateway_forwarder", Forwarder)
CHAIN: web.AppKey[tuple[Stage, ...]] = web.AppKey("gateway_chain")
READINESS = web.AppKey("gateway_readiness", Readiness)
BUS = web.AppKey("gateway_bus", ChangeBus)
STORES = web.AppKey("gateway_stores", Stores)
HASHER = web.AppKey("gateway_hasher", PasswordHasher)
POLICY = web.AppKey("gateway_policy", PolicyEngine)
TENANT_RULES = web.AppKey("gateway_tenant_rules", TenantRuleService)
SIGNING_KEYS = web.AppKey("gateway_signing_keys", KeyRing)
ASSERTIONS = web.AppKey("gateway_assertions", AssertionSigner)
