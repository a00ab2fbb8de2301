"""The upstream pool inside the real `gateway serve` process, in front of a raw-socket upstream
that misbehaves on cue: what the client sees, and that the gateway keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.support.gateway_proc import GatewayProcess, base_config, run_gateway
from tests.support.raw_upstream import RawConn, RawUpstream, respond_always, run_raw_upstream

pytestmark = pytest.mark.e2e

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _config(upstream: RawUpstream, workdir: Path) -> dict[str, object]:
    config = base_config(upstream.url, workdir)
    config["upstreams"][0]["public_paths"] = ["/*"]  # type: ignore[index]
    config["upstreams"][0]["timeouts"] = {"connect": 2, "read": 1}  # type: ignore[index]
    return config


async def _get(gw: GatewayProcess, path: str = "/x") -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(gw.url + path) as resp:
        return resp.status, await resp.read()


async def test_keep_alive_connections_are_reused(tmp_path: Path) -> None:
    async with run_raw_upstream(respond_always(OK)) as up:
        async with run_gateway(tmp_path, _config(up, tmp_path)) as gw:
            for _ in range(5):
                assert await _get(gw) == (200, b"ok")
        assert up.connections == 1


async def test_connection_close_from_upstream_is_honoured(tmp_path: Path) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with run_raw_upstream(respond_always(closing)) as up:  # keeps the socket open anyway
        async with run_gateway(tmp_path, _config(up, tmp_path)) as gw:
            for _ in range(3):
                assert await _get(gw) == (200, b"ok")
        assert up.connections == 3


async def test_interim_100_continue_reaches_the_final_response(tmp_path: Path) -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"
    async with run_raw_upstream(respond_always(answer)) as up:
        async with (
            run_gateway(tmp_path, _config(up, tmp_path)) as gw,
            aiohttp.ClientSession() as http,
            http.post(gw.url + "/x", data=b"payload", expect100=True) as resp,
        ):
            assert (resp.status, await resp.read()) == (201, b"done")
        assert up.requests[0].endswith(b"payload")


async def test_upstream_closing_mid_body_aborts_the_client(tmp_path: Path) -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 300_000

    async def first_cut(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(cut if conn.index == 1 else OK)
        conn.close()

    async with (
        run_raw_upstream(first_cut) as up,
        run_gateway(tmp_path, _config(up, tmp_path)) as gw,
    ):
        with pytest.raises(aiohttp.ClientPayloadError):
            await _get(gw)
        assert await _get(gw) == (200, b"ok")  # the gateway keeps serving, on a new connection


async def test_bad_chunk_size_is_never_a_complete_response(tmp_path: Path) -> None:
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\nabc\r\n0\r\n\r\n"
    async with (
        run_raw_upstream(respond_always(bad)) as up,
        run_gateway(tmp_path, _config(up, tmp_path)) as gw,
    ):
        try:
            status, body = await _get(gw)
        except aiohttp.ClientError:
            return  # cut off after the head: the client never sees a complete body
        assert status == 502, body  # refused before the head went out


async def test_ambiguous_length_is_502(tmp_path: Path) -> None:
    two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"
    async with (
        run_raw_upstream(respond_always(two)) as up,
        run_gateway(tmp_path, _config(up, tmp_path)) as gw,
    ):
        assert (await _get(gw))[0] == 502


async def test_slow_headers_are_504(tmp_path: Path) -> None:
    async def silent(conn: RawConn) -> None:
        await conn.read_request()
        await conn.reader.read()

    async with run_raw_upstream(silent) as up, run_gateway(tmp_path, _config(up, tmp_path)) as gw:
        status, body = await _get(gw)
        assert status == 504, body


async def test_a_dropped_idle_connection_is_retried_for_get(tmp_path: Path) -> None:
    async def answer_then_drop(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(OK)
        await conn.read_request()
        conn.close()

    async with run_raw_upstream(answer_then_drop) as up:
        async with run_gateway(tmp_path, _config(up, tmp_path)) as gw:
            assert await _get(gw) == (200, b"ok")
            assert await _get(gw) == (200, b"ok")
        assert up.connections == 2


async def test_concurrent_requests_over_the_pool(tmp_path: Path) -> None:
    async with run_raw_upstream(respond_always(OK)) as up:
        async with run_gateway(tmp_path, _config(up, tmp_path)) as gw:
            results = await asyncio.gather(*(_get(gw, f"/{i}") for i in range(100)))
        assert set(results) == {(200, b"ok")}
        assert up.connections <= 100
