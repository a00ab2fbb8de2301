"""Shared fixtures: real PostgreSQL/Redis per test run, private servers, the echo upstream.

Session-scoped service fixtures are synchronous (they run their own short event loop for
setup/teardown), so they do not depend on pytest-asyncio's loop scope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager

import pytest

from tests.support import services
from tests.support.services import ServerHandle
from tests.support.upstream import EchoUpstream, run_echo_upstream


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database created for this test run (``gw_test_<hex>``), dropped at the end."""
    with services.postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a reachable Redis (the configured one, else a throwaway server)."""
    with services.redis_server_url() as url:
        yield url


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """Key prefix ``gwtest:<hex>:`` for this run; every key under it is deleted at the end."""
    with services.redis_key_prefix(redis_url) as prefix:
        yield prefix


@pytest.fixture
def private_redis() -> Callable[[], AbstractAsyncContextManager[ServerHandle]]:
    """Factory: ``async with private_redis() as url:`` -- see services.private_redis."""
    return services.private_redis


@pytest.fixture
def private_postgres() -> Callable[[], AbstractAsyncContextManager[ServerHandle]]:
    """Factory: ``async with private_postgres() as url:`` -- see services.private_postgres."""
    return services.private_postgres


@pytest.fixture
async def echo_upstream() -> AsyncIterator[EchoUpstream]:
    """A running echo upstream on a free loopback port (see tests/support/upstream.py)."""
    async with run_echo_upstream() as upstream:
        yield upstream


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    services.cleanup_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if services.UNAVAILABLE:
        terminalreporter.write_sep("!", "REAL SERVICES UNAVAILABLE: tests were SKIPPED", red=True)
        for reason in services.UNAVAILABLE:
            terminalreporter.write_line(reason, red=True)
        terminalreporter.write_line(
            f"Set {services.REQUIRE_ENV}=1 to turn these skips into failures.", yellow=True
        )
