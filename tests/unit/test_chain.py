"""The order of the pipeline is the security argument: pin it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway.app import build_chain_parts, open_auth_services
from gateway.config import load_config
from gateway.pipeline.chain import build_proxy_chain
from gateway.pipeline.reasons import Reason
from gateway.pipeline.responses import STATUS_BY_REASON
from gateway.pipeline.stages.webhook import VerifyWebhook
from gateway.policy.authorizer import PolicyAuthorizer
from gateway.policy.defaults import packaged
from gateway.policy.engine import PolicyEngine
from gateway.storage.factory import open_stores
from gateway.storage.state import open_state_dir


async def test_stages_run_in_the_documented_order(tmp_path: Path) -> None:
    from aiohttp import web

    from gateway import keys

    config = load_config(
        None,
        env={},
        overrides={"upstreams": [{"name": "a", "url": "http://x"}], "state_dir": str(tmp_path)},
    )
    app = web.Application()
    app[keys.STATE] = open_state_dir(tmp_path)
    async with open_stores(config, app[keys.STATE]) as stores:
        services = await open_auth_services(app, config, stores)
        engine = PolicyEngine.from_files(
            packaged("model.conf"), packaged("policy.csv"), freeze_gc=False
        )
        parts = build_chain_parts(config, services, PolicyAuthorizer(engine))
        parts = dataclasses.replace(parts, webhooks=VerifyWebhook(config.upstreams, None))  # type: ignore[arg-type]
        chain = build_proxy_chain(parts)
        services.sessions.close()
        await app[keys.HASHER].close()
    assert [stage.name for stage in chain] == [
        "CheckRequestHead",
        "NormalizePath",
        "StripIdentityHeaders",
        "ResolveTenant",
        "MatchRoute",
        "LoadPrincipal",
        "RequireMfaEnrollment",
        "ApplyTenantSettings",
        "CheckUploadType",
        "CheckCsrf",
        "EnforceRateLimit",
        "Authorize",
        "VerifyWebhook",
        "InjectIdentity",
    ]


def test_every_reason_has_a_status() -> None:
    assert set(STATUS_BY_REASON) == set(Reason)
    assert STATUS_BY_REASON[Reason.STORE_UNAVAILABLE] == 503
    assert STATUS_BY_REASON[Reason.POLICY_DENY] == 403
