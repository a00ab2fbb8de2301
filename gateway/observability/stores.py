"""Store instrumentation: latency, StoreUnavailable counts and spans for any store port.

`instrument(store, port, backend)` returns a proxy that behaves exactly like `store` (same
results, same exceptions, synchronous attributes passed through) and, for every awaited
method, observes `gateway_store_operation_duration_seconds`, counts `StoreUnavailable` in
`gateway_store_errors_total`, and opens a child span when tracing is on.

The identity and session counters (sign-ups, sign-in failures, revocations) are derived here
from the audit events the stores commit: a store writes a change's event in the same
transaction as the change, so counting after a call returned counts exactly what happened.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from opentelemetry import trace

from gateway.audit.events import AuditEvent
from gateway.observability import tracing
from gateway.observability.metrics import (
    SESSION_REVOCATIONS,
    SIGNIN_FAILURES,
    SIGNUPS,
    STORE_DURATION,
    STORE_ERRORS,
)
from gateway.storage.ports import StoreUnavailable

if TYPE_CHECKING:
    from gateway.storage.factory import Stores

T = TypeVar("T")
AsyncMethod = Callable[..., Awaitable[Any]]

REVOCATION_KINDS = {
    "auth.signout": "signout",
    "session.revoke": "revoke",
    "session.revoke_user": "revoke_user",
    "session.revoke_tenant": "revoke_tenant",
}
MAX_REASON_LENGTH = 40


def _revoked_count(result: object) -> int:
    if isinstance(result, bool):
        return int(result)
    return len(result) if isinstance(result, list) else 0


def count_audited(event: AuditEvent, result: object) -> None:
    """Increments the identity/session counters an audited, committed change implies."""
    if event.action == "auth.signup" and event.outcome == "success":
        SIGNUPS.inc()
    elif event.action == "auth.signin" and event.outcome == "failure":
        reason = str(event.details.get("reason", "unknown"))[:MAX_REASON_LENGTH]
        SIGNIN_FAILURES.labels(reason).inc()
    elif (kind := REVOCATION_KINDS.get(event.action)) is not None:
        SESSION_REVOCATIONS.labels(kind).inc(_revoked_count(result))


def _audit_event(args: tuple[Any, ...], kwargs: dict[str, Any]) -> AuditEvent | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, AuditEvent):
            return value
    return None


class InstrumentedStore:
    """A transparent proxy over one store; see the module docstring for what it records."""

    def __init__(self, inner: object, port: str, backend: str) -> None:
        self._inner = inner
        self._port = port
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        wrapped = self._wrap(name, attr)
        setattr(self, name, wrapped)  # later lookups skip __getattr__ entirely
        return wrapped

    def _wrap(self, name: str, method: AsyncMethod) -> AsyncMethod:
        duration = STORE_DURATION.labels(self._port, self._backend, name)
        errors = STORE_ERRORS.labels(self._port, self._backend, name)
        span_name = f"store {self._port}.{name}"
        attributes = {"db.system": self._backend, "gateway.store.port": self._port}

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            tracer = tracing.STATE.tracer
            started = time.perf_counter()
            try:
                if tracer is None:
                    result = await method(*args, **kwargs)
                else:
                    with tracer.start_as_current_span(
                        span_name, kind=trace.SpanKind.CLIENT, attributes=attributes,
                        record_exception=False,  # SECURITY: messages may quote secrets
                    ):  # fmt: skip
                        result = await method(*args, **kwargs)
            except StoreUnavailable:
                errors.inc()
                raise
            finally:
                duration.observe(time.perf_counter() - started)
            event = _audit_event(args, kwargs)
            if event is not None:
                count_audited(event, result)
            return result

        return call


def instrument(store: T, port: str, backend: str) -> T:
    """`store` behind an `InstrumentedStore`, typed as the port it implements."""
    return cast(T, InstrumentedStore(store, port, backend))


def instrument_stores(stores: Stores) -> Stores:
    """A copy of `stores` whose identity, session and rule stores are instrumented.

    The original keeps the concrete adapters, so closing it (which checks adapter types)
    is unaffected; the bus and rate-limit store are left as they are.
    """
    backend = stores.backend
    sessions_backend = f"redis+{backend}" if stores.redis is not None else backend
    return dataclasses.replace(
        stores,
        identity=instrument(stores.identity, "identity", backend),
        sessions=instrument(stores.sessions, "sessions", sessions_backend),
        rules=instrument(stores.rules, "rules", backend),
    )
