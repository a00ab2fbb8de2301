"""The order of the pipeline is the security argument: pin it."""

from __future__ import annotations

from gateway.config import load_config
from gateway.pipeline.chain import ChainParts, build_proxy_chain
from gateway.pipeline.reasons import Reason
from gateway.pipeline.responses import STATUS_BY_REASON
from gateway.proxy.headers import OwnedHeaders
from gateway.proxy.routes import RouteTable


def test_stages_run_in_the_documented_order() -> None:
    config = load_config(None, env={}, overrides={"upstreams": [{"name": "a", "url": "http://x"}]})
    chain = build_proxy_chain(
        ChainParts(
            routes=RouteTable(config.upstreams),
            owned_headers=OwnedHeaders(),
            request_id_header="X-Request-Id",
            max_header_bytes=16384,
        )
    )
    assert [stage.name for stage in chain] == [
        "CheckRequestHead",
        "NormalizePath",
        "StripIdentityHeaders",
        "MatchRoute",
        "ResolveTenant",
        "LoadPrincipal",
        "CheckCsrf",
        "EnforceRateLimit",
        "Authorize",
        "InjectIdentity",
    ]


def test_every_reason_has_a_status() -> None:
    assert set(STATUS_BY_REASON) == set(Reason)
    assert STATUS_BY_REASON[Reason.STORE_UNAVAILABLE] == 503
    assert STATUS_BY_REASON[Reason.POLICY_DENY] == 403
