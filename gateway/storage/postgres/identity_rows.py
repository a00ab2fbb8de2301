"""Row mapping of the `identity` schema: records to rows and back, and the one INSERT helper.

Pure functions with no I/O beyond the insert; arrays (`text[]`) hold roles, features and
required-MFA roles, returned as tuples exactly as `gateway.identity.models` declares them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.identity.models import ApiKey, Membership, ServiceAccount, Tenant, User
from gateway.storage.postgres.database import Connection, Record


def tenant(row: Record) -> Tenant:
    return Tenant(
        row[0], row[1], row[2], tuple(row[3]), row[4], row[5], tuple(row[6])
    )  # fmt: skip


def user(row: Record) -> User:
    return User(row[0], row[1], row[2], bool(row[3]))


def membership(row: Record) -> Membership:
    return Membership(row[0], row[1], tuple(row[2]), row[3])


def account(row: Record) -> ServiceAccount:
    return ServiceAccount(row[0], row[1], row[2], tuple(row[3]), row[4])


def key(row: Record) -> ApiKey:
    return ApiKey(*tuple(row)[:6])


async def insert(conn: Connection, table: str, row: dict[str, object]) -> None:
    """Inserts one row; `table` and the column names are constants of this module."""
    columns = ", ".join(row)
    marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 - no user input
    await conn.execute(sql, *row.values())


def fields(record: Any) -> dict[str, object]:
    """A record's fields by name (the column names of its table)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def tenant_row(tenant: Tenant) -> dict[str, object]:
    lists = {"features": list(tenant.features), "require_mfa": list(tenant.require_mfa)}
    return fields(tenant) | lists


def user_row(user: User, password_hash: str) -> dict[str, object]:
    return fields(user) | {"password_hash": password_hash}


def membership_row(membership: Membership) -> dict[str, object]:
    return fields(membership) | {"roles": list(membership.roles)}
