"""Row mapping of the identity tables, shared by the SQLite and PostgreSQL adapters.

Guarantees:

* one mapping for both backends: a row that either adapter reads becomes the same record of
  `gateway.identity.models` / `gateway.identity.records`, and a record becomes the same
  column-to-value dict for an INSERT, so the two adapters cannot drift apart;
* rows are read by column position (`sqlite3.Row` and `asyncpg.Record` both index by int);
  each reader names the column order its SELECT must list, and both adapters' SELECTs list
  the same columns in the same order;
* the backends differ only where `IdentityRows` says so, fixed per backend and never guessed
  from a value: string lists (roles, features, required-MFA roles) are JSON text in SQLite and
  `text[]` in PostgreSQL; a flag (`email_verified`) is written as INTEGER 0/1 in SQLite and
  boolean in PostgreSQL (read back with `bool()`, exact for both); parameters are `?` in SQLite
  and `$n` in PostgreSQL. Timestamps are Unix seconds (REAL / double precision) in both and
  pass through unchanged;
* secrets (password hashes, API-key secret hashes) leave a row only inside `UserCredentials`
  or `ApiKeyRecord`, whose `repr` hides them;
* pure functions: no I/O, no state.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.identity.models import (
    ApiKey,
    ApiKeyRecord,
    Invitation,
    Membership,
    ServiceAccount,
    Tenant,
    User,
    UserCredentials,
)
from gateway.identity.records import EmailToken, MfaRecord

__all__ = ["POSTGRES", "SQLITE", "IdentityRows", "Row"]


class Row(Protocol):
    """A result row indexed by column position: `sqlite3.Row` or `asyncpg.Record`."""

    def __getitem__(self, index: int, /) -> Any: ...


def _fields(record: Any) -> dict[str, object]:
    """A record's fields by name (the column names of its table)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


@dataclasses.dataclass(frozen=True, slots=True)
class IdentityRows:
    """The identity row mapping for one backend; the fields are what that backend stores
    differently (see the module docstring), everything else is common."""

    load_list: Callable[[Any], tuple[str, ...]]
    """A string-list column's value as the record's tuple."""
    dump_list: Callable[[Sequence[str]], object]
    """A record's string tuple as the value of a string-list column."""
    dump_flag: Callable[[bool], object]
    """A boolean as the value of a flag column."""
    placeholder: Callable[[int], str]
    """The SQL placeholder of the n-th (1-based) parameter."""

    # Rows to records. Each names the columns its SELECT lists, in order.

    def tenant(self, row: Row) -> Tenant:
        """id, slug, created_at, features, plan, upstream, require_mfa."""
        return Tenant(
            row[0], row[1], row[2], self.load_list(row[3]), row[4], row[5],
            self.load_list(row[6]),
        )  # fmt: skip

    def user(self, row: Row) -> User:
        """id, email, created_at, email_verified (then anything)."""
        return User(row[0], row[1], row[2], bool(row[3]))

    def user_credentials(self, row: Row) -> UserCredentials:
        """id, email, created_at, email_verified, password_hash."""
        return UserCredentials(self.user(row), row[4])

    def membership(self, row: Row) -> Membership:
        """tenant_id, user_id, roles, created_at."""
        return Membership(row[0], row[1], self.load_list(row[2]), row[3])

    def invitation(self, row: Row) -> Invitation:
        """id, tenant_id, email, role, expires_at, accepted_at."""
        return Invitation(row[0], row[1], row[2], row[3], row[4], row[5])

    def account(self, row: Row) -> ServiceAccount:
        """id, tenant_id, name, roles, created_at."""
        return ServiceAccount(row[0], row[1], row[2], self.load_list(row[3]), row[4])

    def key(self, row: Row) -> ApiKey:
        """id, tenant_id, service_account_id, created_at, expires_at, revoked_at (then anything)."""
        return ApiKey(row[0], row[1], row[2], row[3], row[4], row[5])

    def key_record(self, row: Row) -> ApiKeyRecord:
        """The columns of `key`, then secret_hash."""
        return ApiKeyRecord(self.key(row), row[6])

    def mfa(self, row: Row) -> MfaRecord:
        """user_id, secret_ciphertext, created_at, enabled_at, last_step."""
        return MfaRecord(row[0], row[1], row[2], row[3], row[4])

    def email_token(self, row: Row) -> EmailToken:
        """user_id, purpose, email, created_at, expires_at, used_at."""
        return EmailToken(row[0], row[1], row[2], row[3], row[4], row[5])

    # Records to rows: column name -> value, for `insert_sql`.

    def tenant_row(self, tenant: Tenant) -> dict[str, object]:
        lists = {"features": tenant.features, "require_mfa": tenant.require_mfa}
        return _fields(tenant) | {name: self.dump_list(value) for name, value in lists.items()}

    def user_row(self, user: User, password_hash: str) -> dict[str, object]:
        flag = self.dump_flag(user.email_verified)
        return _fields(user) | {"email_verified": flag, "password_hash": password_hash}

    def membership_row(self, membership: Membership) -> dict[str, object]:
        return _fields(membership) | {"roles": self.dump_list(membership.roles)}

    def invitation_row(
        self, invitation: Invitation, token_hash: str, created_at: float
    ) -> dict[str, object]:
        return _fields(invitation) | {"token_hash": token_hash, "created_at": created_at}

    def account_row(self, account: ServiceAccount) -> dict[str, object]:
        return _fields(account) | {"roles": self.dump_list(account.roles)}

    def key_row(self, key: ApiKey, secret_hash: str) -> dict[str, object]:
        return _fields(key) | {"secret_hash": secret_hash}

    def insert_sql(self, table: str, row: dict[str, object]) -> str:
        """The INSERT of `row` into `table`; both are constants of the adapters, never input."""
        columns = ", ".join(row)
        marks = ", ".join(self.placeholder(i) for i in range(1, len(row) + 1))
        return f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 - no user input


def _json_list(value: Any) -> tuple[str, ...]:
    return tuple(json.loads(value))


def _json_text(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _question_mark(_: int) -> str:
    return "?"


def _numbered(n: int) -> str:
    return f"${n}"


SQLITE = IdentityRows(
    load_list=_json_list, dump_list=_json_text, dump_flag=int, placeholder=_question_mark
)
"""SQLite: lists as JSON text, flags as 0/1, `?` parameters."""

POSTGRES = IdentityRows(load_list=tuple, dump_list=list, dump_flag=bool, placeholder=_numbered)
"""PostgreSQL: lists as `text[]` (asyncpg: Python lists), flags as boolean, `$n` parameters."""
