"""The demo upstream: a tiny app that shows exactly what the gateway forwarded to it."""

from __future__ import annotations

import html
import json

from aiohttp import web

IDENTITY_PREFIXES = ("x-tenant", "x-user", "x-auth", "x-gateway", "x-forwarded", "x-request-id")


def received(request: web.Request) -> dict[str, object]:
    """What arrived: method, path, query, headers in order, and the identity headers."""
    headers = [[k, v] for k, v in request.headers.items()]
    identity = {k: v for k, v in request.headers.items() if k.lower().startswith(IDENTITY_PREFIXES)}
    return {
        "method": request.method,
        "path": request.raw_path.partition("?")[0],
        "query": request.query_string,
        "headers": headers,
        "identity": identity,
        "signed_in": "X-User-Id" in request.headers or "X-Forwarded-User" in request.headers,
    }


def render_html(info: dict[str, object]) -> str:
    """An HTML page of the received request; every value is escaped."""
    esc = html.escape
    identity = info["identity"]
    assert isinstance(identity, dict)
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in identity.items())
    who = "signed in" if info["signed_in"] else "not signed in (public route)"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>gateway demo upstream</title>
<style>body{{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}}
th{{text-align:left;padding-right:1rem}}code,td{{font-family:ui-monospace,monospace}}</style></head>
<body><h1>Demo upstream</h1><p>This page is the app behind the gateway. You are <b>{who}</b>.</p>
<p>Request: <code>{esc(str(info["method"]))} {esc(str(info["path"]))}</code></p>
<h2>Identity headers the gateway injected</h2><table>{rows or "<tr><td>none</td></tr>"}</table>
<h2>Everything received</h2><pre>{esc(json.dumps(info["headers"], indent=1))}</pre>
<p><a href="/">home</a> · <a href="/public/">a public page</a>
 · <a href="/.gateway/logout">sign out</a></p>
</body></html>"""


async def show(request: web.Request) -> web.Response:
    """Renders the received request as HTML for browsers, JSON otherwise."""
    info = received(request)
    if "text/html" in request.headers.get("Accept", ""):
        return web.Response(text=render_html(info), content_type="text/html")
    return web.json_response(info)


def build_demo_upstream() -> web.Application:
    """The demo upstream application: every path shows what it received."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", show)
    return app


def build_demo_upstream_cli(argv: list[str]) -> web.Application:
    """Entry point for `python -m aiohttp.web gateway.demo.upstream:build_demo_upstream_cli`."""
    return build_demo_upstream()
