"""Helpers for the scale-out end-to-end tests: gateway replicas on PostgreSQL and Redis.

Every replica is a real `gateway serve` process with its own working directory (config file,
log) in front of one shared echo upstream. Replicas share one state directory, as a real
deployment shares its key files through a volume, so CSRF and assertion keys agree.

Nothing here touches the shared servers beyond the per-run database and a per-test Redis key
prefix nested under the per-run prefix (deleted with it at the end of the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from tests.e2e.auth_helpers import INSECURE_COOKIE, AuthEnv
from tests.support.gateway_proc import base_config, run_gateway
from tests.support.upstream import EchoUpstream, run_echo_upstream

T = TypeVar("T")

READYZ = "/.gateway/readyz"
SIGNOUT = "/.gateway/auth/signout"
READY_TIMEOUT = 60.0  # seconds for a replica to start (generous: CI machines can be busy)
POLL_STEP = 0.005  # seconds between two looks at an observable effect
SHARED_STATE = "shared-state"  # under the root of `replicas`: the key files they share


def nested_prefix(run_prefix: str) -> str:
    """A fresh Redis key prefix under the per-run one (cleaned up with it)."""
    return f"{run_prefix}{secrets.token_hex(4)}:"


def scaleout_config(
    upstream_url: str,
    workdir: Path,
    state_dir: Path,
    *,
    database_url: str | None,
    redis_url: str | None = None,
    redis_prefix: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A replica's config: free ports, the shared state dir, the given stores.

    Built-in auth rate limits are off (tests sign in many times); `extra` replaces top-level
    keys.
    """
    config = base_config(upstream_url, workdir)
    config["state_dir"] = str(state_dir)
    config["rate_limits"] = {"defaults": False}
    if database_url is not None:
        config["database_url"] = database_url
    if redis_url is not None:
        config["redis_url"] = redis_url
    if redis_prefix is not None:
        config["storage"] = {"redis_prefix": redis_prefix}
    config.update(extra)
    return config


@contextlib.asynccontextmanager
async def replica(
    workdir: Path,
    upstream: EchoUpstream,
    state_dir: Path,
    *,
    args: Sequence[str] = (),
    **store_config: Any,
) -> AsyncIterator[AuthEnv]:
    """One `gateway serve` replica (see `scaleout_config` for `store_config`)."""
    config = scaleout_config(upstream.url, workdir, state_dir, **store_config)
    async with run_gateway(workdir, config, args=args, ready_timeout=READY_TIMEOUT) as gw:
        yield AuthEnv(gw, upstream, INSECURE_COOKIE)


@contextlib.asynccontextmanager
async def replicas(
    root: Path,
    names: Sequence[str],
    *,
    args: Mapping[str, Sequence[str]] | None = None,
    **store_config: Any,
) -> AsyncIterator[dict[str, AuthEnv]]:
    """Several replicas sharing stores, keys and an upstream.

    The first one starts alone (it creates the shared key files and, with `auto_migrate`,
    the schema); the others then start concurrently, as replicas of a rollout do.
    """
    state_dir = root / SHARED_STATE
    async with run_echo_upstream() as upstream, contextlib.AsyncExitStack() as stack:

        async def start(name: str) -> AuthEnv:
            return await stack.enter_async_context(
                replica(
                    root / name, upstream, state_dir, args=(args or {}).get(name, ()),
                    **store_config,
                )
            )  # fmt: skip

        first, *rest = names
        envs = {first: await start(first)}
        started = await asyncio.gather(*(start(name) for name in rest), return_exceptions=True)
        for name, result in zip(rest, started, strict=True):
            if isinstance(result, BaseException):
                raise result
            envs[name] = result
        yield envs


async def kill(env: AuthEnv) -> int:
    """SIGKILLs a single-process replica (no shutdown of any kind) and reaps it.

    Returns the exit code (`-SIGKILL`). The replica's context manager then finds it gone.
    """
    proc = env.gw.proc
    proc.send_signal(signal.SIGKILL)
    return await proc.wait()


async def in_flight(
    env: AuthEnv, http: aiohttp.ClientSession, path: str, session: str
) -> tuple[int | None, bytes | None, BaseException | None]:
    """A GET that may be cut off: (status if headers arrived, body if read whole, error)."""
    status: int | None = None
    try:
        async with http.get(
            f"{env.url}{path}", headers=env.cookie(session), allow_redirects=False
        ) as resp:
            status = resp.status
            return status, await resp.read(), None
    except aiohttp.ClientError as exc:
        return status, None, exc


async def poll(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float,
    step: float = POLL_STEP,
) -> tuple[T, float]:
    """Calls `probe` until `accept(result)`; returns (the accepted result, seconds taken).

    Fails with the last result when `timeout` passes first.
    """
    start = time.perf_counter()
    deadline = start + timeout
    while True:
        result = await probe()
        elapsed = time.perf_counter() - start
        if accept(result):
            return result, elapsed
        if time.perf_counter() > deadline:
            raise AssertionError(f"not observed within {timeout} s; last result: {result!r}")
        await asyncio.sleep(step)


async def get(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    path: str,
    session: str | None = None,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: Any = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """A request to `env` (cookie and same-origin `Origin` when `session` is given).

    Returns (status, parsed JSON or text, response); never follows redirects.
    """
    sent: dict[str, str] = dict(env.same_origin(session)) if session else {}
    sent.update(headers or {})
    data = None
    if body is not None:
        sent["Content-Type"] = "application/json"
        data = json.dumps(body)
    async with http.request(
        method, f"{env.url}{path}", headers=sent, data=data, allow_redirects=False
    ) as resp:
        raw = await resp.read()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, parsed, resp


async def readiness(env: AuthEnv, http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
    """(status, body) of `/.gateway/readyz`."""
    status, body, _ = await get(env, http, READYZ)
    assert isinstance(body, dict), body
    return status, body


async def signout(env: AuthEnv, http: aiohttp.ClientSession, session: str) -> None:
    """Signs out (same-origin POST) and asserts the 204."""
    status, body, _ = await get(env, http, SIGNOUT, session, method="POST")
    assert status == 204, body


def is_traceback(text: Any) -> bool:
    """Whether a response body looks like a Python traceback or aiohttp's 500 page."""
    shown = text if isinstance(text, str) else json.dumps(text)
    return "Traceback" in shown or "500 Internal Server Error" in shown


def assert_json_error(status: int, body: Any, expected: int) -> None:
    """The gateway's own JSON error with status `expected`: never a traceback or upstream."""
    assert status == expected, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], body
    assert not is_traceback(body), body
