"""What a stage is: a named async callable that may refuse the request."""

from __future__ import annotations

from typing import Protocol

from gateway.pipeline.reasons import Deny
from gateway.pipeline.scope import RequestScope


class Stage(Protocol):
    """One step of the request pipeline.

    A stage reads what earlier stages put in the scope, may add to it, and returns `None`
    to let the request continue or a `Deny` to stop it. It never builds a response itself.
    """

    name: str

    async def __call__(self, scope: RequestScope) -> Deny | None: ...
