"""End-to-end fixtures: the real gateway process in front of the real echo upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.gateway_proc import GatewayProcess, base_config, run_gateway
from tests.support.upstream import EchoUpstream


@pytest.fixture
async def gateway(tmp_path: Path, echo_upstream: EchoUpstream) -> AsyncIterator[GatewayProcess]:
    """A gateway whose `/public/*` paths proxy to the echo upstream without authentication."""
    config = base_config(echo_upstream.url, tmp_path)
    config["upstreams"][0]["public_paths"] = [
        "/public/*",
        "/ws",
        "/download/*",
        "/download-cl/*",
        "/upload",
        "/status/*",
        "/hop",
        "/head-test",
        "/reset",
        "/sse",
    ]
    config["upstreams"][0]["max_body_bytes"] = 16 * 1024 * 1024
    config["upstreams"][0]["timeouts"] = {"connect": 2, "read": 1}
    config["limits"] = {"max_header_bytes": 8192}
    async with run_gateway(tmp_path, config) as gw:
        yield gw
