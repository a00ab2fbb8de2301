"""The redaction layer: credentials are masked wherever they appear, ordinary text is not."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from gateway.observability.logs import JsonFormatter, TextFormatter
from gateway.observability.redact import MASK, redact, register_secret

API_KEY = "gw_key_3kT9aaaaaaaaaaaaaaaaaa_Xy7bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1XzEyMyJ9.c2lnbmF0dXJlLWNhbmFyeQ"
SESSION_TOKEN = "Zk3q9V0bq1n8mX2yH7c4T5u6W8r0P1s2D3f4G5h6J7k"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Cookie: gw_session=tok-canary-1; theme=dark", "tok-canary-1"),
        ("headers={'Cookie': 'gw_session=tok-canary-2'}", "tok-canary-2"),
        ("Set-Cookie: __Host-gw_session=tok-canary-3; Path=/", "tok-canary-3"),
        ("Authorization: Bearer bearer-canary-4", "bearer-canary-4"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', "dXNlcjpwYXNz"),
        (f"key {API_KEY} refused", "Xy7bbbb"),
        (f"token {JWT}", "c2lnbmF0dXJlLWNhbmFyeQ"),
        ("password=hunter2-canary&email=a@b", "hunter2-canary"),
        ('{"new_password": "pw canary 5"}', "pw canary 5"),
        ("client_secret: s3cr3t-canary", "s3cr3t-canary"),
        ("X-CSRF-Token: csrf-canary-6", "csrf-canary-6"),
        ("postgresql://gw:db-canary-7@db:5432/gw", "db-canary-7"),
        (f"lookup of {SESSION_TOKEN} failed", SESSION_TOKEN),
        ("api_key=abc-canary-8", "abc-canary-8"),
        ("('u_1', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA')", "c2FsdHNhbHQ"),
    ],
)
def test_credentials_are_masked(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "gateway listening on http://127.0.0.1:8080",
        "GET /public/x 200",
        "policy reloaded: version 3",
        "request 0f9c2b0e5d6a4e1f8a7b6c5d4e3f2a1b denied: policy-deny",
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_registered_secret_values_are_masked_anywhere() -> None:
    register_secret("vault-value-canary-9")
    register_secret("abc")  # too short to register: would shred ordinary text
    assert redact("got vault-value-canary-9!") == f"got {MASK}!"
    assert redact("abc") == "abc"


def _record_with_exception(message: str) -> logging.LogRecord:
    try:
        raise ConnectionError(message)
    except ConnectionError:
        exc_info = sys.exc_info()
    return logging.LogRecord("gateway.test", logging.ERROR, __file__, 1, "failed: %s", ("x",),
                             exc_info)  # fmt: skip


def test_json_formatter_masks_exception_messages_and_stack() -> None:
    record = _record_with_exception("connect to redis://:redis-canary-10@cache:6379 failed")
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert "redis-canary-10" not in line
    assert entry["error"] == "ConnectionError"
    assert "cache:6379" in entry["error_message"]
    assert "ConnectionError" in entry["stack"]


def test_extra_fields_are_masked_too() -> None:
    record = logging.LogRecord("gateway.test", logging.INFO, __file__, 1, "msg", (), None)
    record.reason = "Authorization: Bearer field-canary-11"
    record.status = 200
    entry = json.loads(JsonFormatter().format(record))
    assert "field-canary-11" not in entry["reason"]
    assert entry["status"] == 200


def test_text_formatter_masks_and_shows_the_key_fields() -> None:
    record = _record_with_exception("password=text-canary-12")
    record.status = 503
    record.route = "app"
    line = TextFormatter().format(record)
    assert "text-canary-12" not in line
    assert "status=503" in line and "route=app" in line and "\n" not in line
