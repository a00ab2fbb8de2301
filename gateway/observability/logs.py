"""Log output: one JSON object per line, or a readable line format for the demo.

Guarantees of both formatters: every string they emit (message, extra fields, exception
message and traceback) has passed through `redact`, so no cookie, Authorization value, API
key, password, token, JWT or registered secret reaches the output; a record's extra fields
are emitted as keys, never formatted into text; a JSON line is exactly one line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any

from gateway.observability.redact import redact

STANDARD_FIELDS = (
    "request_id",
    "tenant_id",
    "user_id",
    "action",
    "route",
    "status",
    "duration_ms",
    "reason",
)


def _clean(value: object) -> object:
    """Numbers and booleans as they are; anything else as redacted text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _exception_fields(record: logging.LogRecord) -> dict[str, str]:
    """The exception's type, message and traceback, redacted (empty without an exception)."""
    if not record.exc_info or record.exc_info[0] is None:
        return {}
    exc_type, exc, tb = record.exc_info
    # SECURITY: exception messages quote whatever failed (URLs, SQL, header values): redacted.
    return {
        "error": exc_type.__name__,
        "error_message": redact(str(exc)),
        "stack": redact("".join(traceback.format_exception(exc_type, exc, tb))),
    }


def _timestamp(record: logging.LogRecord) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the contract's field names, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for name in STANDARD_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = _clean(value)
        entry.update(_exception_fields(record))
        return json.dumps(entry, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """A short human-readable line for `gateway demo`: time, level, message, key fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [f"{stamp} {record.levelname.lower():7} {redact(record.getMessage())}"]
        for name in ("status", "duration_ms", "route", "reason", "tenant_id", "user_id"):
            value = getattr(record, name, None)
            if value is not None:
                parts.append(f"{name}={_clean(value)}")
        errors = _exception_fields(record)
        if errors:
            parts.append(f"error={errors['error']}: {errors['error_message']}")
        return " ".join(parts).replace("\n", "\\n")


def configure_logging(level: str, fmt: str) -> None:
    """Routes every logger to stderr in the chosen format, replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log is replaced by the gateway's (`gateway.access`).
    logging.getLogger("aiohttp.access").disabled = True
    # pycasbin logs its whole model at INFO on every enforcer build: noise, not news.
    logging.getLogger("casbin").setLevel(logging.WARNING)
