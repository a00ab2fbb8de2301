"""RequireMfaEnrollment: users whose role in the tenant requires MFA reach nothing until they
have enrolled (and signed in with it).

A session is MFA-verified (`SessionRecord.mfa`) after the sign-in's MFA step or after the
user turned MFA on in it; a user with MFA on only ever gets such sessions, because the
password alone yields a half-session that `LoadPrincipal` treats as anonymous. So a session
without `mfa` whose roles meet the tenant's `require_mfa` belongs to a user who must enrol.

The refusal is a `MfaEnrollmentRequired` (403 `mfa-enrollment-required`, pointing to the
hosted enrolment page; browsers are redirected there): `enrollment_response` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from aiohttp import web

from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope

ENROLL_PATH: Final = "/.gateway/mfa/enroll"
CODE: Final = "mfa-enrollment-required"
MESSAGE: Final = f"your role requires multi-factor authentication: enrol at {ENROLL_PATH}"


@dataclass(frozen=True, slots=True)
class MfaEnrollmentRequired(Deny):
    """403: the principal must enrol in MFA first (`target` is where to come back to)."""

    reason: Reason = Reason.POLICY_DENY
    message: str = MESSAGE
    headers: tuple[tuple[str, str], ...] = (("Link", f'<{ENROLL_PATH}>; rel="mfa-enroll"'),)
    target: str = "/"


def enrollment_required(
    principal: Principal | None,
    tenant: Tenant | None = None,
    roles: tuple[str, ...] | None = None,
) -> bool:
    """True for a user's cookie session that is not MFA-verified although one of its roles
    is in the tenant's `require_mfa`. API keys and external JWTs are never concerned.

    By default the principal's own tenant and roles are judged; the admin API passes the
    tenant it acts on and the caller's roles there (`tenant`, `roles`).
    """
    if principal is None or principal.kind != "user" or principal.session is None:
        return False
    tenant = principal.tenant if tenant is None else tenant
    roles = principal.roles if roles is None else roles
    # SECURITY: a password-only session of a role that must use MFA reaches nothing.
    return bool(set(roles) & set(tenant.require_mfa)) and not principal.session.mfa


class RequireMfaEnrollment:
    """Refuses sessions that are not MFA-verified when the tenant requires MFA for one of
    the principal's roles. API keys (service accounts) are not affected. Runs right after
    `LoadPrincipal`, before anything else uses the principal."""

    name = "RequireMfaEnrollment"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        if enrollment_required(scope.principal):
            return MfaEnrollmentRequired(target=scope.target)
        return None


def wants_html(request: web.BaseRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and request.method in ("GET", "HEAD")


def enrollment_response(request: web.BaseRequest, deny: MfaEnrollmentRequired) -> web.Response:
    """Browsers: 302 to the enrolment page (`rd` = the request's own path); others: 403 JSON
    `{"error": {"code": "mfa-enrollment-required", "message", "enroll"}}`."""
    if wants_html(request):
        location = f"{ENROLL_PATH}?rd={quote(deny.target, safe='')}"
        return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
    body = {"error": {"code": CODE, "message": deny.message, "enroll": ENROLL_PATH}}
    response = web.json_response(body, status=403)
    response.headers["Cache-Control"] = "no-store"
    for name, value in deny.headers:
        response.headers[name] = value
    return response
