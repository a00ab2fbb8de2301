"""The verified caller of a request, as the pipeline establishes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gateway.identity.models import Tenant
from gateway.sessions.models import SessionRecord

AuthMethod = Literal["session", "api_key", "jwt"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, in which tenant, with which roles there, and how they proved it.

    `tenant` is the tenant the request acts in (resolved and membership-checked); `roles`
    are the principal's roles in that tenant only. `session` is set for cookie sessions.
    """

    kind: Literal["user", "service_account"]
    id: str
    email: str | None
    tenant: Tenant
    roles: tuple[str, ...]
    auth_method: AuthMethod
    session: SessionRecord | None = None
    key_id: str | None = None
    is_operator: bool = False
    new_token: str | None = field(default=None, repr=False)
    """A rotated session token the response must set (after a privilege change)."""
