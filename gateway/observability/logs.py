"""Log output: one JSON object per line, or a readable line format for the demo.

Issue 10 adds the full redaction layer and access log; this module already guarantees the
line shape and that a record's extra fields are emitted as keys, never formatted into text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

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


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the contract's field names."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in STANDARD_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            # SECURITY: the exception type only; messages and tracebacks may quote secrets.
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """A short human-readable line for `gateway demo`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname.lower():7} {record.getMessage()}"


def configure_logging(level: str, fmt: str) -> None:
    """Routes every logger to stderr in the chosen format, replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log is replaced by the gateway's (issue 10).
    logging.getLogger("aiohttp.access").disabled = True
