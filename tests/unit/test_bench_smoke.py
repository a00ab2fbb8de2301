"""Smoke tests of the benchmark's own arithmetic: the Python load generator and wrk parsing.

No assertion here is about speed; they check counting and percentiles only.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bench.throughput import parse_wrk, percentile, python_load, render_nginx_conf


@pytest.fixture
async def counting_server() -> AsyncIterator[tuple[str, list[int]]]:
    """An in-process aiohttp server on 127.0.0.1 that counts the requests it answers."""
    count = [0]

    async def ok(request: web.Request) -> web.Response:
        count[0] += 1
        return web.Response(body=b"x" * 256)

    async def fail(request: web.Request) -> web.Response:
        count[0] += 1
        return web.Response(status=503, body=b"no")

    app = web.Application()
    app.router.add_get("/fail", fail)
    app.router.add_get("/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", count
    finally:
        await runner.cleanup()


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0.5) == 1
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4
    assert percentile([7.0], 50) == 7
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="q must be"):
        percentile(values, 0)


async def test_python_load_counts_every_request_and_computes_percentiles(
    counting_server: tuple[str, list[int]],
) -> None:
    url, count = counting_server
    result = await python_load(url + "/public/x", duration=1.0, connections=4, keep_samples=True)

    assert result.requests > 0
    assert result.requests == count[0]  # every request sent was answered and counted once
    assert result.errors == 0
    assert result.non_2xx == 0
    assert result.extra["statuses"] == {"200": result.requests}
    samples = sorted(result.extra["samples_ms"])
    assert len(samples) == result.requests
    assert result.p50_ms == pytest.approx(percentile(samples, 50))
    assert result.p99_ms == pytest.approx(percentile(samples, 99))
    assert 0 < samples[0] <= result.p50_ms <= result.p99_ms <= samples[-1]
    assert result.seconds >= 1.0
    assert result.rps == pytest.approx(result.requests / result.seconds)


async def test_python_load_counts_non_2xx_and_connection_errors(
    counting_server: tuple[str, list[int]],
) -> None:
    url, count = counting_server
    result = await python_load(url + "/fail", duration=0.3, connections=2)
    assert result.requests == count[0] > 0
    assert result.non_2xx == result.requests
    assert result.extra["statuses"] == {"503": result.requests}

    # Nothing listens on port 1 of the loopback: every attempt is an error, none a response.
    refused = await python_load("http://127.0.0.1:1/", duration=0.2, connections=1)
    assert refused.requests == 0
    assert refused.errors > 0
    assert math.isnan(refused.p50_ms)


WRK_OUTPUT = """\
Running 8s test @ http://127.0.0.1:40000/public/bench
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms    2.10ms  40.00ms   95.00%
    Req/Sec    20.11k     1.20k   22.00k    80.00%
  Latency Distribution
     50%  812.00us
     75%    1.02ms
     90%    1.50ms
     99%    1.20s
  160880 requests in 8.00s, 50.32MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  20109.93
Transfer/sec:      6.29MB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed["rps"] == pytest.approx(20109.93)
    assert parsed["requests"] == 160880
    assert parsed["seconds"] == pytest.approx(8.0)
    assert parsed["percentiles_ms"]["50"] == pytest.approx(0.812)
    assert parsed["percentiles_ms"]["75"] == pytest.approx(1.02)
    assert parsed["percentiles_ms"]["99"] == pytest.approx(1200.0)
    assert parsed["errors"] == 5
    assert parsed["non_2xx"] == 7
    with pytest.raises(ValueError, match="could not parse"):
        parse_wrk("wrk: connection refused\n")


def test_nginx_template_keeps_nginx_variables() -> None:
    text = render_nginx_conf("listen {{port}}; proxy_set_header Host $host;", port=8081)
    assert text == "listen 8081; proxy_set_header Host $host;"
    with pytest.raises(ValueError, match="unfilled"):
        render_nginx_conf("listen {{port}};")


def test_instructions_per_request_cancels_what_every_run_pays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pathlib import Path

    from bench import instructions

    fixed, per_request = 5_000_000, 420_000  # start-up and warm-up; one request's cost

    def counted(tree: Path, row: str, requests: int, python: str) -> int:
        return fixed + per_request * requests

    monkeypatch.setattr(instructions, "count", counted)
    assert instructions.per_request(Path("."), "gw-public", 200, 1000, "python") == per_request


def test_full_report_shows_the_proxys_cpu_and_its_kernel_share() -> None:
    from bench.full import format_report

    def row(target: str, cpu: dict[str, float], kernel: dict[str, float]) -> dict[str, object]:
        return {
            "target": target, "rps": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0, "non_2xx": 0,
            "errors": 0, "server_cpu_ms_per_request": cpu, "server_kernel_share": kernel,
        }  # fmt: skip

    report = {
        "results": [
            row("nginx", {"gateway": 0.0001}, {"gateway": 1.0}),
            row("gw-public", {"gateway": 0.078, "upstream": 0.02}, {"gateway": 0.22}),
            row("base-public", {"gateway": 0.001, "baseline": 0.088}, {"baseline": 0.23}),
        ],
        "ratios": {},
        "gateway_memory_kib": {},
    }
    lines = {line.split()[0]: line.split() for line in format_report(report).splitlines()[2:5]}
    assert lines["nginx"][6:8] == ["-", "-"]  # no proxy of ours in that row
    assert lines["gw-public"][6:8] == ["78", "22%"]
    assert lines["base-public"][6:8] == ["88", "23%"]
