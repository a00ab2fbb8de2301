"""Configuration problems: one line each, naming key, value and expectation, never a secret."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

REDACTED = "<redacted>"

# Leaf key names whose values are secrets (the SecretStr fields) plus name fragments that
# mark key material anywhere in the tree.
SECRET_FIELDS = frozenset({"database_url", "redis_url"})
_SECRET_NAME = re.compile(r"password|passwd|secret|token|credential|private|_key$", re.I)
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.I)
_MAX_SHOWN = 60


@dataclass(frozen=True)
class Problem:
    """One invalid setting. `str()` is one line: `{key}: got {value}; expected {expected}`.

    `value` is already safe to print (short, secrets replaced by `<redacted>`). `origin`
    names where the value came from when that was not the file (an environment variable or
    the command line) and is appended in brackets.
    """

    key: str
    value: str
    expected: str
    origin: str = ""

    def __str__(self) -> str:
        line = f"{self.key}: got {self.value}; expected {self.expected}"
        return f"{line} [set by {self.origin}]" if self.origin else line


class ConfigError(Exception):
    """A configuration that must not be used, with every problem found in it."""

    def __init__(self, problems: Iterable[Problem], source: str) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"invalid configuration ({n} problem{'' if n == 1 else 's'}) in {self.source}"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def is_secret_key(key: str) -> bool:
    """True when the last named segment of a dotted key holds secret material."""
    names = [part for part in re.split(r"[.\[\]]", key) if part and not part.isdigit()]
    if not names:
        return False
    leaf = names[-1].lower()
    return leaf in SECRET_FIELDS or bool(_SECRET_NAME.search(leaf))


def show_value(key: str, value: object) -> str:
    """A short printable form of `value` that never reveals a secret.

    Secret keys give `<redacted>`; containers are summarised instead of echoed (they may
    hold secrets under other names); URL credentials (`user:pass@`) are masked.
    """
    # SECURITY: config errors reach logs and terminals; secrets must never be echoed.
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    text = _USERINFO.sub(rf"\g<scheme>{REDACTED}@", repr(value))
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 1] + "…"
    return text
