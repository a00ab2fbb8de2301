"""RequireMfaEnrollment: tenants' `require_mfa` roles reach nothing without an MFA session."""

from __future__ import annotations

import dataclasses
import json

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.scope import RequestScope
from gateway.pipeline.stages.mfa import (
    CODE,
    ENROLL_PATH,
    MfaEnrollmentRequired,
    RequireMfaEnrollment,
    enrollment_required,
    enrollment_response,
)
from gateway.sessions.models import SessionRecord

TENANT = Tenant("t_1", "acme", 0.0, require_mfa=("admin",))
SESSION = SessionRecord("s_1", "h", "u_1", "t_1", 0.0, 0.0, 100.0, 60)


def principal(roles: tuple[str, ...], mfa: bool = False, **kw: object) -> Principal:
    session = dataclasses.replace(SESSION, mfa=mfa)
    base = Principal("user", "u_1", "a@x", TENANT, roles, "session", session=session)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def scope(who: Principal | None, target: str = "/app?x=1") -> RequestScope:
    made = RequestScope(make_mocked_request("GET", target), "req-1", 0.0)
    made.target = target
    made.principal = who
    return made


@pytest.mark.parametrize(
    ("who", "refused"),
    [
        (principal(("admin",)), True),
        (principal(("admin", "viewer")), True),
        (principal(("admin",), mfa=True), False),
        (principal(("viewer",)), False),
        (principal(("admin",), kind="service_account", session=None), False),
        (None, False),
    ],
)
async def test_required_roles_need_an_mfa_session(who: Principal | None, refused: bool) -> None:
    deny = await RequireMfaEnrollment()(scope(who))
    assert (deny is not None) == refused
    if deny is not None:
        assert isinstance(deny, MfaEnrollmentRequired) and deny.target == "/app?x=1"


def test_the_admin_api_judges_the_tenant_it_acts_on() -> None:
    relaxed = Tenant("t_2", "other", 0.0)
    # The principal's own tenant and roles by default (as the proxy stage does).
    assert enrollment_required(principal(("admin",)))
    assert not enrollment_required(principal(("admin",), tenant=relaxed))
    # Acting on another tenant: that tenant's rule, for the roles held there.
    assert enrollment_required(principal(("viewer",), tenant=relaxed), TENANT, ("admin",))
    assert not enrollment_required(principal(("admin",)), relaxed, ("admin",))
    assert not enrollment_required(principal(("admin",)), TENANT, ("operator",))
    assert not enrollment_required(principal(("admin",), mfa=True), TENANT, ("admin",))
    machine = principal(("admin",), kind="service_account", session=None)
    assert not enrollment_required(machine, TENANT, ("admin",))


async def test_api_clients_get_403_with_a_pointer() -> None:
    deny = MfaEnrollmentRequired(target="/app")
    response = enrollment_response(make_mocked_request("POST", "/app"), deny)
    assert response.status == 403
    assert response.body is not None
    body = json.loads(bytes(response.body))  # type: ignore[arg-type]
    assert body["error"]["code"] == CODE == "mfa-enrollment-required"
    assert body["error"]["enroll"] == ENROLL_PATH
    assert ENROLL_PATH in response.headers["Link"]


async def test_browsers_are_sent_to_the_enrolment_page() -> None:
    request = make_mocked_request("GET", "/app", headers={"Accept": "text/html"})
    response = enrollment_response(request, MfaEnrollmentRequired(target="/app?x=1"))
    assert response.status == 302
    assert response.headers["Location"] == f"{ENROLL_PATH}?rd=%2Fapp%3Fx%3D1"
