"""Seeding the demo: a tenant `demo` with an admin and a viewer, fresh passwords each run.

Passwords are generated at every start and printed once; they are never written to disk
(only their Argon2id hashes are stored), so a demo state directory holds no usable secret.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

from gateway.audit.events import CLI_CONTEXT, Actor
from gateway.identity.errors import Conflict, NotFound
from gateway.identity.service import IdentityService

DEMO_TENANT = "demo"
DEMO_USERS = (("admin@demo.example", "admin"), ("viewer@demo.example", "viewer"))
SEED_ACTOR = Actor("system", "demo")


@dataclass(frozen=True)
class DemoAccount:
    email: str
    role: str
    password: str


def new_demo_password() -> str:
    """A random password that passes the policy (16 url-safe characters)."""
    return secrets.token_urlsafe(12)


async def seed_demo(identity: IdentityService) -> list[DemoAccount]:
    """Creates the demo tenant and users when missing and gives every user a new password."""
    with contextlib.suppress(Conflict):
        await identity.create_tenant(DEMO_TENANT, SEED_ACTOR, CLI_CONTEXT)
    accounts = []
    for email, role in DEMO_USERS:
        password = new_demo_password()
        try:
            await identity.set_password(email, password, SEED_ACTOR, CLI_CONTEXT)
        except NotFound:
            await identity.create_user(email, password, DEMO_TENANT, role, SEED_ACTOR, CLI_CONTEXT)
        accounts.append(DemoAccount(email, role, password))
    return accounts
