"""SecretValue masks itself everywhere; references parse strictly and fail closed."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from gateway.secrets.refs import RefError, SecretRef, format_ref, parse_ref
from gateway.secrets.values import MASK, SecretValue

CANARY = "canary-7f3e9a"


def test_value_is_masked_in_every_text_form(caplog: pytest.LogCaptureFixture) -> None:
    value = SecretValue(CANARY)
    shown = [repr(value), str(value), f"{value}", f"{value!r}", "%s" % (value,), str([value])]  # noqa: UP031
    assert all(CANARY not in text for text in shown)
    assert repr(value) == MASK
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").warning("value %s %r", value, value)
    assert CANARY not in caplog.text
    assert value.reveal() == CANARY
    assert value.encode() == CANARY.encode()


def test_value_cannot_be_pickled_and_compares_by_content() -> None:
    value = SecretValue(CANARY)
    with pytest.raises(TypeError):
        pickle.dumps(value)
    with pytest.raises(TypeError):
        copy.deepcopy(value)
    assert value == SecretValue(CANARY)
    assert value != SecretValue("other")
    with pytest.raises(TypeError):
        SecretValue(b"bytes")  # type: ignore[arg-type]


def test_from_bytes_refuses_non_utf8_without_echoing() -> None:
    with pytest.raises(ValueError, match="not UTF-8") as info:
        SecretValue.from_bytes(b"\xff\xfe" + CANARY.encode())
    assert CANARY not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("secret://acme/db-password", SecretRef("acme", "db-password")),
        ("secret://acme/db.password_2#7", SecretRef("acme", "db.password_2", 7)),
        ("secret://t_AbC123/x", SecretRef("t_AbC123", "x")),
    ],
)
def test_parse_valid_references(text: str, expected: SecretRef) -> None:
    assert parse_ref(text) == expected
    assert str(expected) == text
    assert format_ref(expected.tenant, expected.name, expected.version) == text


@pytest.mark.parametrize(
    "text",
    [
        "vault://secret/data/x#k",
        "env://HOME",
        "file:///etc/passwd",
        "op://vault/item/field",
        "SECRET://acme/x",
        "secret:/acme/x",
        "secret://acme",
        "secret://acme/",
        "secret://acme/a/b",
        "secret://acme/../x",
        "secret://acme/x?version=2",
        "secret://acme/x#0",
        "secret://acme/x#-1",
        "secret://acme/x#v2",
        "secret://acme/x#",
        "secret://user@acme/x",
        "secret://acme:80/x",
        "secret://acme/.hidden",
        "",
        "secret://acme/" + "x" * 600,
    ],
)
def test_refuse_everything_else(text: str) -> None:
    with pytest.raises(RefError) as info:
        parse_ref(text)
    assert text not in str(info.value) or not text
