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


PRINCIPAL_MEMO_ENTRIES = 10_000


class PrincipalMemo:
    """The principal last built per credential, reused while it is made of the same objects.

    A principal is a pure function of the objects it is built from (a session record and a
    tenant membership, or a verified API key), and the caches those come from hand out a new
    object whenever anything in it changes. So while `get` is given the identical objects
    (`is`, not `==`), the principal it returns equals the one that would be built now; any
    new object misses. Bounded: emptied when `PRINCIPAL_MEMO_ENTRIES` credentials are held.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[tuple[str, ...], tuple[object, object, Principal]] = {}

    def get(self, key: tuple[str, ...], first: object, second: object) -> Principal | None:
        """The principal remembered for `key` if it was built from exactly these objects."""
        hit = self._data.get(key)
        if hit is not None and hit[0] is first and hit[1] is second:
            return hit[2]
        return None

    def put(self, key: tuple[str, ...], first: object, second: object, made: Principal) -> None:
        """Remembers `made` as built from `first` and `second`."""
        if len(self._data) >= PRINCIPAL_MEMO_ENTRIES:
            self._data.clear()
        self._data[key] = (first, second, made)
