"""The operator console `/.gateway/console`: a server-rendered page of a tenant's sessions, with
revoke buttons, and a live tail of its audit events.

It works without JavaScript (each revoke button is a form that posts and redirects back);
the script only adds the live tail (EventSource on the admin API's stream) and revokes
without a reload. Access is the admin API's: the same policy decision, the same scope rules
(a tenant admin sees their tenant, an operator every tenant or `?tenant=`), the same MFA gate
(a revocation needing step-up sends the browser to the hosted `/.gateway/mfa` page, which
comes back here). Every value is HTML-escaped and the page is served with a strict
Content-Security-Policy.
"""

from __future__ import annotations

import time
from html import escape
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.audit.store import AuditQuery, StoredEvent
from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.responses import json_error
from gateway.pipeline.stages.mfa import enrollment_required
from gateway.storage.ports import StoreUnavailable
from gateway.web.account_services import ENROLL_PAGE, MFA_PAGE
from gateway.web.admin import (
    PREFIX,
    Refused,
    actor_of,
    admin_mfa_gate,
    enrollment_refusal,
    step_up_response,
)
from gateway.web.admin_audit import AUDIT_FEED
from gateway.web.admin_sessions import admin_scope, session_view
from gateway.web.common import AUTH_SERVICES, AuthServices, request_context
from gateway.web.hosted import read_form, see_other
from gateway.web.pages import message_page

CONSOLE = "/.gateway/console"
TAIL_SIZE = 20
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
    "style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
CONSOLE_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3rem .5rem;font-size:.85rem;text-align:left}"
    "tr.revoked{opacity:.4}.note{color:#555}ol{font-family:monospace;font-size:.8rem}"
)
# The live tail and script-enhanced revocation. Text goes in through textContent only.
CONSOLE_JS = """(function () {
  "use strict";
  var tail = document.getElementById("audit-tail");
  var live = document.getElementById("live");
  function stamp(ts) { return new Date(ts * 1000).toISOString().slice(0, 19).replace("T", " "); }
  function show(ev) {
    var li = document.createElement("li"), actor = ev.actor || {};
    li.className = "event";
    li.dataset.seq = ev.seq;
    li.dataset.action = ev.action;
    li.dataset.target = ev.target || "";
    li.textContent = stamp(ev.ts) + " " + ev.action + " " + ev.outcome + " target=" +
      (ev.target || "-") + " actor=" + actor.type + ":" + (actor.id || "-");
    tail.appendChild(li);
  }
  var source = new EventSource(tail.dataset.stream);
  source.onopen = function () { live.textContent = "(live)"; };
  source.onerror = function () { live.textContent = "(reconnecting)"; };
  source.addEventListener("audit", function (m) { show(JSON.parse(m.data)); });
  document.querySelectorAll("form.revoke").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = form.querySelector("button");
      button.disabled = true;
      fetch(form.action, {method: "POST", credentials: "same-origin",
        headers: {"Accept": "application/json"}, body: new URLSearchParams(new FormData(form))})
        .then(function (r) {
          if (r.status === 401) {  // step-up (or signed out): prove a code, then come back
            window.location.href = form.dataset.stepUp;
            return;
          }
          if (!r.ok) { button.disabled = false; return; }
          form.closest("tr").classList.add("revoked");
          button.textContent = "Revoked";
        });
    });
  });
})();
"""


def stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def event_item(event: StoredEvent) -> str:
    """One audit event as a list item (the same text the script renders for live events)."""
    r = event.record
    actor = r.get("actor") or {}
    text = (
        f"{stamp(float(r.get('ts', 0)))} {r.get('action')} {r.get('outcome')} "
        f"target={r.get('target') or '-'} actor={actor.get('type')}:{actor.get('id') or '-'}"
    )
    return (
        f'<li class="event" data-seq="{event.seq}" data-action="{escape(str(r.get("action")))}"'
        f' data-target="{escape(str(r.get("target") or ""))}">{escape(text)}</li>'
    )


def console_url(tenant_ref: str | None) -> str:
    """The console page of a scope (None: the caller's default one)."""
    return f"{CONSOLE}?{urlencode({'tenant': tenant_ref})}" if tenant_ref else CONSOLE


def step_up_url(tenant_ref: str | None) -> str:
    """The hosted MFA page, coming back to the console afterwards."""
    return f"{MFA_PAGE}?{urlencode({'rd': console_url(tenant_ref)})}"


def revoke_form(session_id: str, csrf: str, tenant: Tenant | None) -> str:
    """A POST form (with the session's CSRF token) that revokes one session."""
    query = f"?{urlencode({'tenant': tenant.id})}" if tenant else ""
    action = f"{CONSOLE}/sessions/{quote(session_id, safe='')}/revoke{query}"
    step_up = step_up_url(tenant.id if tenant else None)
    return (
        f'<form class="revoke" method="post" action="{escape(action)}"'
        f' data-step-up="{escape(step_up)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<button type="submit" data-session="{escape(session_id)}">Revoke</button></form>'
    )


async def session_rows(services: AuthServices, principal: Principal, tenant: Tenant | None) -> str:
    """The table rows of the scope's active sessions, each with its revoke form."""
    assert principal.session is not None
    rows, own = [], principal.session.id
    csrf = services.sessions.csrf_token(principal.session)
    for record in await services.sessions.list_sessions(tenant.id if tenant else None, None):
        view = await session_view(services, record)
        cells = [
            record.id + (" (this session)" if record.id == own else ""),
            view["user"]["email"] or record.user_id,
            view["tenant"]["slug"] or record.tenant_id,
            stamp(record.created_at),
            stamp(record.last_seen_at),
            record.ip or "",
            record.user_agent or "",
        ]
        tds = "".join(f"<td>{escape(str(c))}</td>" for c in cells)
        form = revoke_form(record.id, csrf, tenant)
        rows.append(f'<tr data-session="{escape(record.id)}">{tds}<td>{form}</td></tr>')
    return "".join(rows)


async def audit_tail(request: web.Request, tenant: Tenant | None) -> str:
    """The recent events and the live tail's element (the stream resumes after them)."""
    reader = request.app[AUDIT_FEED].reader
    tenant_id = tenant.id if tenant else None
    events = await reader.find(AuditQuery(tenant_id=tenant_id, limit=TAIL_SIZE))
    after = events[-1].seq if events else await reader.last_seq()
    params = {"after": str(after), **({"tenant": tenant_id} if tenant_id else {})}
    stream = f"{PREFIX}/audit/stream?{urlencode(params)}"
    items = "".join(event_item(e) for e in events)
    return (
        f'<h2>Audit <span id="live" class="note">(static)</span></h2>'
        f'<ol id="audit-tail" data-stream="{escape(stream)}">{items}</ol>'
    )


def render(principal: Principal, tenant: Tenant | None, rows: str, tail: str) -> web.Response:
    scope = escape(tenant.slug) if tenant else "all tenants"
    who = escape(principal.email or principal.id)
    head = "<tr>" + "".join(
        f"<th>{h}</th>"
        for h in ("Session", "User", "Tenant", "Created", "Last seen", "IP", "User agent", "")
    )
    body = (
        f'<p class="note">Signed in as {who} · {scope}</p><h2>Sessions</h2>'
        f'<table id="sessions">{head}</tr>{rows}</table>{tail}'
        f'<script src="{CONSOLE}/console.js"></script>'
    )
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Gateway console'
        f"</title><style>{CONSOLE_STYLE}</style></head><body><h1>Console</h1>{body}</body></html>"
    )
    return web.Response(text=text, content_type="text/html", headers=HEADERS)


async def console_principal(request: web.Request, services: AuthServices) -> Principal:
    """The signed-in user of a console request (a cookie session), else Refused.

    A role the tenant requires MFA for, without an MFA session, is sent to enrol. Step-up is
    the caller's to check (after its CSRF check): `console_step_up`."""
    found = await services.authenticator.authenticate(request, None)
    if not isinstance(found, Principal):
        rd = quote(request.path_qs, safe="/?=&")
        raise Refused(see_other(f"/.gateway/login?rd={rd}"))
    if found.session is None:
        raise Refused(message_page("Not allowed", "the console needs a browser session", 403))
    # SECURITY: the console is the admin API in a page: the same `require_mfa` rule.
    if enrollment_required(found):
        raise Refused(see_other(f"{ENROLL_PAGE}?{urlencode({'rd': request.path_qs})}"))
    return found


async def console_step_up(
    request: web.Request, services: AuthServices, principal: Principal, wants_json: bool
) -> None:
    """Refused when this console action needs a fresher MFA code: the script gets the admin
    API's 401 JSON, a plain form post a redirect to the hosted MFA page (back here after)."""
    # SECURITY: the console's revoke is an admin action: the same MFA gate as the admin API.
    gate = await admin_mfa_gate(request, services, principal)
    if gate == "enroll":
        raise Refused(enrollment_refusal(request))
    if gate == "step-up":
        if wants_json:
            raise Refused(step_up_response())
        raise Refused(see_other(step_up_url(request.query.get("tenant"))))


def as_page(response: web.Response) -> web.Response:
    """A refusal of the admin API as a page (a redirect stays a redirect)."""
    if response.status < 400:
        return response
    titles = {404: "Not found", 403: "Not allowed", 401: "Sign in"}
    title = titles.get(response.status, "Unavailable")
    return message_page(title, title.lower(), response.status)


async def console_page(request: web.Request) -> web.StreamResponse:
    """`GET /.gateway/console?tenant=`: the sessions table and the audit tail."""
    services = request.app[AUTH_SERVICES]
    try:
        principal = await console_principal(request, services)
        tenant = await admin_scope(request, services, principal, f"{PREFIX}/sessions")
        rows = await session_rows(services, principal, tenant)
        return render(principal, tenant, rows, await audit_tail(request, tenant))
    except Refused as refused:
        return as_page(refused.response)
    except StoreUnavailable:
        return message_page("Unavailable", "a backing store is unavailable", 503)


async def console_revoke(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/console/sessions/{id}/revoke?tenant=` (form with `csrf`): revokes,
    then redirects back (or answers JSON to the script)."""
    services = request.app[AUTH_SERVICES]
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        principal = await console_principal(request, services)
        form = await read_form(request) or {}
        assert principal.session is not None
        # SECURITY: the form must carry this session's CSRF token (a cross-site form cannot).
        if not services.sessions.check_csrf(principal.session, form.get("csrf")):
            return message_page("Refused", "cross-site request refused", 403)
        await console_step_up(request, services, principal, wants_json)
        session_id = request.match_info["id"]
        tenant = await admin_scope(request, services, principal, f"{PREFIX}/sessions/x")
        done = await services.sessions.revoke(
            session_id, actor_of(principal), request_context(services.scope(request)),
            tenant_id=tenant.id if tenant else None, reason="admin",
        )  # fmt: skip
    except Refused as refused:
        return refused.response if wants_json else as_page(refused.response)
    except StoreUnavailable:
        return json_error(503, "store-unavailable", "a backing store is unavailable")
    if wants_json:
        return web.json_response({"revoked": done}, status=200 if done else 404)
    back = f"?{urlencode({'tenant': tenant.id})}" if tenant else ""
    return see_other(f"{CONSOLE}{back}")


async def console_script(request: web.Request) -> web.StreamResponse:
    """The console's script (static; no data in it)."""
    return web.Response(
        text=CONSOLE_JS,
        content_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def setup_console(app: web.Application) -> None:
    """Registers the console's page, its revoke form target and its script."""
    app.router.add_get(CONSOLE, console_page)
    app.router.add_post(f"{CONSOLE}/sessions/{{id}}/revoke", console_revoke)
    app.router.add_get(f"{CONSOLE}/console.js", console_script)
