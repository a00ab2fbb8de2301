"""How the fast front writes answers: framing, Date, Connection, and no header injection."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11

from gateway.front.respond import ResponseInjection, encode_head, write_complete


class Collect:
    lost = False
    started = False

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.started = True
        self.data += data

    async def drain(self) -> None:
        return None

    def abort(self) -> None:
        raise AssertionError("not expected")


def lines(head: bytes) -> list[str]:
    return head.decode().split("\r\n")


def test_head_adds_date_and_closes_when_asked() -> None:
    head = encode_head(HttpVersion11, 200, None, [("X-A", "1")], keep_alive=False)
    assert lines(head)[0] == "HTTP/1.1 200 OK"
    assert any(line.startswith("Date: ") for line in lines(head))
    assert "Connection: close" in lines(head)
    assert head.endswith(b"\r\n\r\n")


def test_head_keeps_an_upstream_date_and_marks_chunking() -> None:
    given = [("Date", "Mon, 01 Jan 2024 00:00:00 GMT")]
    head = encode_head(HttpVersion10, 404, "Gone Fishing", given, keep_alive=True, chunked=True)
    assert lines(head)[0] == "HTTP/1.0 404 Gone Fishing"
    assert [line for line in lines(head) if line.startswith("Date")] == [f"Date: {given[0][1]}"]
    assert "Transfer-Encoding: chunked" in lines(head)
    assert "Connection: close" not in lines(head)


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb"])
def test_cr_or_lf_in_a_header_is_refused(value: str) -> None:
    with pytest.raises(ResponseInjection):
        encode_head(HttpVersion11, 200, None, [("X-A", value)], keep_alive=True)


def test_a_denial_gets_its_length_and_keeps_the_connection() -> None:
    sink = Collect()
    response = web.json_response({"error": {"code": "x"}}, status=403)
    assert write_complete(sink, HttpVersion11, response, keep_alive=True, head_only=False)
    head, _, body = sink.data.partition(b"\r\n\r\n")
    assert body == response.body
    assert f"Content-Length: {len(body)}" in lines(head)


def test_head_requests_get_the_length_but_no_body() -> None:
    sink = Collect()
    response = web.Response(status=401, body=b"nope")
    write_complete(sink, HttpVersion11, response, keep_alive=True, head_only=True)
    head, _, body = sink.data.partition(b"\r\n\r\n")
    assert (body, "Content-Length: 4" in lines(head)) == (b"", True)


def test_a_forced_close_is_honoured() -> None:
    sink = Collect()
    response = web.Response(status=413, body=b"big")
    response.force_close()
    assert not write_complete(sink, HttpVersion11, response, keep_alive=True, head_only=False)
    assert b"Connection: close" in sink.data


class Exploding:
    name = "Exploding"

    async def __call__(self, scope: object) -> None:
        raise RuntimeError("secret-token-in-message")


async def test_a_failing_stage_answers_500_json_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from typing import Any, cast

    from gateway.front.request import FastRequest
    from gateway.front.serve import FastPath
    from gateway.pipeline.entry import ScopeFactory
    from gateway.proxy.clientip import TrustedProxies

    sink = Collect()
    factory = ScopeFactory(TrustedProxies([]), "X-Request-Id")
    fast = FastPath(factory, (Exploding(),), cast(Any, None))
    nothing = cast(Any, None)
    fields = [(b"Host", b"h")]
    request = FastRequest("GET", "/x", HttpVersion11, fields, "::1", "http", nothing, None, "h")
    assert await fast.serve(request, sink, True) is False
    head, _, body = sink.data.partition(b"\r\n\r\n")
    assert lines(head)[0] == "HTTP/1.1 500 Internal Server Error"
    assert b"internal-error" in body and b"secret" not in body
    assert "secret" not in caplog.text and "RuntimeError" in caplog.text
