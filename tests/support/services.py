"""Real PostgreSQL and Redis for tests: per-run databases/prefixes and private servers.

Policy (DESIGN.md "Tests"):

- ``GATEWAY_TEST_DATABASE_URL`` / ``GATEWAY_TEST_REDIS_URL`` name the servers to use, defaulting
  to the standard local ports. Each test run gets its own database (``gw_test_<hex>``) and its
  own Redis key prefix (``gwtest:<hex>:``), removed at the end. Nothing outside them is touched:
  no FLUSHDB, no reconfiguration, no stopping of shared servers.
- When a server is unreachable a throwaway one is started from the system's binaries
  (``initdb``/``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` or PATH, ``redis-server``).
- When that is impossible the dependent tests are skipped with a loud reason, or fail when
  ``GATEWAY_TEST_REQUIRE_SERVICES=1`` (CI).

The session-level helpers are synchronous (they run their own short-lived event loop), so they
can back session-scoped fixtures without sharing an event loop with the tests. The private
servers for fault tests are async context managers::

    async with private_redis() as url:       # url is a str with .stop() / .start()
        await url.stop()                      # outage
        await url.start()                     # back, same port, empty data

PostgreSQL clusters are copied from one ``initdb`` template made once per process, so each
``private_postgres()`` costs a copy plus a server start.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.support.net import free_port

__all__ = [
    "DATABASE_ENV",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_REDIS_URL",
    "REDIS_ENV",
    "REQUIRE_ENV",
    "UNAVAILABLE",
    "PostgresServer",
    "RedisServer",
    "ServerHandle",
    "ServiceStartError",
    "cleanup_all",
    "create_database",
    "delete_prefix",
    "drop_database",
    "find_pg_bindir",
    "postgres_database",
    "postgres_probe",
    "private_postgres",
    "private_redis",
    "redact_url",
    "redis_key_prefix",
    "redis_probe",
    "redis_server_url",
    "run_sync",
    "service_unavailable",
    "services_required",
    "with_database",
]

REQUIRE_ENV = "GATEWAY_TEST_REQUIRE_SERVICES"
DATABASE_ENV = "GATEWAY_TEST_DATABASE_URL"
REDIS_ENV = "GATEWAY_TEST_REDIS_URL"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PG_BINDIR_GLOB = "/usr/lib/postgresql/*/bin"
PROBE_TIMEOUT = 3.0
START_TIMEOUT = 30.0

#: Reasons for which service-backed tests were skipped; printed loudly in the terminal summary.
UNAVAILABLE: list[str] = []

T = TypeVar("T")


class ServiceStartError(RuntimeError):
    """A throwaway server could not be created or started."""


# --------------------------------------------------------------------------------------------
# general helpers


def services_required() -> bool:
    """True when ``GATEWAY_TEST_REQUIRE_SERVICES`` asks for missing services to fail tests."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def service_unavailable(reason: str) -> NoReturn:
    """Skip the current test loudly, or fail it when services are required."""
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so this is a failure)", pytrace=False)
    message = f"SERVICE UNAVAILABLE: {reason}"
    if message not in UNAVAILABLE:
        UNAVAILABLE.append(message)
    pytest.skip(message)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a private event loop without touching the thread's current loop."""
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coro)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def with_database(url: str, dbname: str) -> str:
    """``url`` with its path (database name) replaced by ``dbname``."""
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "<no log>"


_LIVE: set[PostgresServer | RedisServer] = set()
_LIVE_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# PostgreSQL


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb``/``pg_ctl``: newest ``/usr/lib/postgresql/*/bin``, else PATH."""

    def version_key(path: str) -> tuple[int, ...]:
        version = Path(path).parent.name
        return tuple(int(p) for p in re.findall(r"\d+", version)) or (0,)

    for candidate in sorted(glob.glob(PG_BINDIR_GLOB), key=version_key, reverse=True):
        bindir = Path(candidate)
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _pg_os_user() -> tuple[list[str], tuple[int, int] | None]:
    """Command prefix and (uid, gid) to own files with; PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return [], None
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceStartError(
            "running as root and there is no 'postgres' OS user to run PostgreSQL as"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ServiceStartError("running as root and 'runuser' is not available")
    return [runuser, "-u", "postgres", "--"], (entry.pw_uid, entry.pw_gid)


def _pg_tempdir(prefix: str) -> Path:
    _, owner = _pg_os_user()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        os.chown(path, *owner)
    return path


def _run(cmd: list[str], *, cwd: Path, timeout: float, what: str) -> None:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceStartError(f"{what} failed: {exc}") from exc
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-2000:]
        raise ServiceStartError(f"{what} exited with {proc.returncode}: {output}")


_TEMPLATE: dict[Path, Path] = {}  # bindir -> template root (holding "data")
_TEMPLATE_LOCK = threading.Lock()


def _pg_template(bindir: Path) -> Path:
    """Data directory of an ``initdb``-ed cluster, created once per process per bindir."""
    with _TEMPLATE_LOCK:
        root = _TEMPLATE.get(bindir)
        if root is None:
            prefix, _ = _pg_os_user()
            root = _pg_tempdir("gw-pg-template-")
            try:
                _run(
                    [
                        *prefix,
                        str(bindir / "initdb"),
                        "-D",
                        str(root / "data"),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C",
                        "--no-sync",
                    ],
                    cwd=root,
                    timeout=120,
                    what="initdb",
                )
            except BaseException:
                shutil.rmtree(root, ignore_errors=True)
                raise
            _TEMPLATE[bindir] = root
        return root / "data"


class PostgresServer:
    """A throwaway PostgreSQL cluster (a copy of the template) on a loopback port."""

    def __init__(self, bindir: Path | None = None, port: int | None = None) -> None:
        found = bindir or find_pg_bindir()
        if found is None:
            raise ServiceStartError(
                f"no PostgreSQL server binaries (looked in {PG_BINDIR_GLOB} and PATH)"
            )
        self.bindir = found
        self.port = port or free_port()
        self._prefix, _ = _pg_os_user()
        template = _pg_template(self.bindir)
        self.base = _pg_tempdir("gw-pg-")
        self.datadir = self.base / "data"
        self.logfile = self.base / "postgres.log"
        self.running = False
        self.closed = False
        try:
            # cp -a keeps modes and, as root, the postgres ownership of the template.
            _run(
                [*self._prefix, "cp", "-a", str(template), str(self.datadir)],
                cwd=self.base,
                timeout=60,
                what="copying the PostgreSQL template cluster",
            )
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        with _LIVE_LOCK:
            _LIVE.add(self)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _pg_ctl(self, *args: str, what: str, timeout: float = START_TIMEOUT + 10) -> None:
        _run(
            [*self._prefix, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
            cwd=self.base,
            timeout=timeout,
            what=what,
        )

    def start(self) -> None:
        if self.closed:
            raise ServiceStartError("this PostgreSQL server was already destroyed")
        if self.running:
            return
        options = (
            f"-k {self.base} -p {self.port} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        try:
            self._pg_ctl(
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "-o",
                options,
                "start",
                what=f"pg_ctl start (port {self.port})",
            )
        except ServiceStartError as exc:
            raise ServiceStartError(f"{exc}\nserver log:\n{_tail(self.logfile)}") from exc
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        if not self.running:
            return
        self._pg_ctl("-m", mode, "-w", "-t", "30", "stop", what="pg_ctl stop")
        self.running = False

    def close(self) -> None:
        """Stop the server (immediately) and delete its files."""
        if self.closed:
            return
        try:
            if self.running:
                self.stop(mode="immediate")
        finally:
            self.closed = True
            shutil.rmtree(self.base, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.discard(self)


async def postgres_probe(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """``None`` if ``url`` accepts a connection and a query, else a description of the error."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        await conn.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await conn.close()
    return None


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=PROBE_TIMEOUT)
    try:
        await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name`` even if connections to it are still open."""
    conn = await asyncpg.connect(admin_url, timeout=PROBE_TIMEOUT)
    try:
        if conn.get_server_version().major >= 13:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        else:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)}")
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """Yield the URL of a fresh ``gw_test_<hex>`` database; drop it (and any throwaway) after.

    Synchronous, for session-scoped fixtures. Skips/fails per :func:`service_unavailable`.
    """
    admin_url = os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE_URL
    server: PostgresServer | None = None
    error = run_sync(postgres_probe(admin_url))
    if error is not None:
        try:
            server = PostgresServer()
            server.start()
        except ServiceStartError as exc:
            if server is not None:
                server.close()
            service_unavailable(
                f"PostgreSQL at {redact_url(admin_url)} is unreachable ({error})"
                f" and no throwaway server could be started: {exc}"
            )
        admin_url = server.url("postgres")
    try:
        name = f"gw_test_{secrets.token_hex(6)}"
        try:
            run_sync(create_database(admin_url, name))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            service_unavailable(f"cannot create a test database on {redact_url(admin_url)}: {exc}")
        try:
            yield with_database(admin_url, name)
        finally:
            run_sync(drop_database(admin_url, name))
    finally:
        if server is not None:
            server.close()


# --------------------------------------------------------------------------------------------
# Redis


class RedisServer:
    """A throwaway ``redis-server`` without persistence on a loopback port."""

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise ServiceStartError("no 'redis-server' binary on PATH")
        self.binary = found
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gw-redis-"))
        self.logfile = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.closed = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.closed:
            raise ServiceStartError("this Redis server was already destroyed")
        if self.running:
            return
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
        ]
        with self.logfile.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            except OSError as exc:
                raise ServiceStartError(f"cannot run redis-server: {exc}") from exc
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not self._answers_ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise ServiceStartError(
                    f"redis-server on port {self.port} did not come up:\n{_tail(self.logfile)}"
                )
            time.sleep(delay)  # polling a child process from sync code; nothing to await
            delay = min(delay * 2, 0.1)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Stop the server (data is lost: there is no persistence)."""
        self._kill()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._kill()
        finally:
            self.closed = True
            shutil.rmtree(self.dir, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.discard(self)


async def redis_probe(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """``None`` if ``url`` answers PING, else a description of the error."""
    client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await client.ping()
    except (OSError, TimeoutError, aioredis.RedisError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


async def delete_prefix(url: str, prefix: str, batch: int = 500) -> int:
    """Delete every key starting with ``prefix`` (SCAN + UNLINK); return how many were removed.

    Never touches other keys; refuses an empty prefix.
    """
    if not prefix:
        raise ValueError("refusing to delete keys for an empty prefix")
    pattern = _glob_escape(prefix) + "*"
    deleted = 0
    client = aioredis.from_url(url)
    try:
        pending: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=batch):
            if not key.startswith(prefix.encode()):  # belt and braces
                continue
            pending.append(key)
            if len(pending) >= batch:
                deleted += await client.unlink(*pending)
                pending.clear()
        if pending:
            deleted += await client.unlink(*pending)
    finally:
        await client.aclose()
    return deleted


@contextlib.contextmanager
def redis_server_url() -> Iterator[str]:
    """Yield a reachable Redis URL: the configured one, else a throwaway server (stopped after).

    Synchronous, for session-scoped fixtures. Skips/fails per :func:`service_unavailable`.
    """
    url = os.environ.get(REDIS_ENV) or DEFAULT_REDIS_URL
    error = run_sync(redis_probe(url))
    if error is None:
        yield url
        return
    server: RedisServer | None = None
    try:
        server = RedisServer()
        server.start()
    except ServiceStartError as exc:
        if server is not None:
            server.close()
        service_unavailable(
            f"Redis at {redact_url(url)} is unreachable ({error})"
            f" and no throwaway server could be started: {exc}"
        )
    try:
        yield server.url
    finally:
        server.close()


@contextlib.contextmanager
def redis_key_prefix(url: str, parent: str = "gwtest:") -> Iterator[str]:
    """Yield a unique ``<parent><hex>:`` prefix; delete every key under it afterwards.

    The default gives the per-run ``gwtest:<hex>:``; pass the run prefix as ``parent`` to
    carve out a nested one.
    """
    prefix = f"{parent}{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        run_sync(delete_prefix(url, prefix))


# --------------------------------------------------------------------------------------------
# private servers for fault tests


class ServerHandle(str):
    """The URL of a private server (it *is* that string) plus controls to simulate outages."""

    server: PostgresServer | RedisServer

    def __new__(cls, url: str, server: PostgresServer | RedisServer) -> ServerHandle:
        obj = super().__new__(cls, url)
        obj.server = server
        return obj

    @property
    def url(self) -> str:
        return str.__str__(self)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def running(self) -> bool:
        return self.server.running

    async def stop(self) -> None:
        """Take the server down (same port stays reserved for :meth:`start`)."""
        await asyncio.to_thread(self.server.stop)

    async def start(self) -> None:
        """Bring the server (back) up on the same port; returns once it accepts connections."""
        await asyncio.to_thread(self.server.start)


@contextlib.asynccontextmanager
async def private_redis() -> AsyncIterator[ServerHandle]:
    """A private, empty ``redis-server`` on a free port for the block; killed at exit."""
    try:
        server = await asyncio.to_thread(RedisServer)
    except ServiceStartError as exc:
        service_unavailable(f"cannot create a private Redis server: {exc}")
    try:
        try:
            await asyncio.to_thread(server.start)
        except ServiceStartError as exc:
            service_unavailable(f"cannot start a private Redis server: {exc}")
        yield ServerHandle(server.url, server)
    finally:
        await asyncio.to_thread(server.close)


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[ServerHandle]:
    """A private PostgreSQL server (fresh cluster) on a free port for the block.

    Yields the URL of its ``postgres`` database (user ``postgres``, trust auth). The first use
    in a process runs ``initdb`` once; later uses copy that cluster.
    """
    try:
        server = await asyncio.to_thread(PostgresServer)
    except ServiceStartError as exc:
        service_unavailable(f"cannot create a private PostgreSQL cluster: {exc}")
    try:
        try:
            await asyncio.to_thread(server.start)
        except ServiceStartError as exc:
            service_unavailable(f"cannot start a private PostgreSQL server: {exc}")
        yield ServerHandle(server.url("postgres"), server)
    finally:
        await asyncio.to_thread(server.close)


def cleanup_all() -> None:
    """Stop every throwaway server still alive and remove the template clusters."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in live:
        with contextlib.suppress(Exception):
            server.close()
    with _TEMPLATE_LOCK:
        roots = list(_TEMPLATE.values())
        _TEMPLATE.clear()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


atexit.register(cleanup_all)
