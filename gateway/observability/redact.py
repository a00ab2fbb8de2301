"""Masking credentials in free text before it leaves the process (logs, span attributes).

Guarantees of `redact(text)`: the returned text contains none of

* the value of a `Cookie`, `Set-Cookie`, `Authorization` or `Proxy-Authorization` header,
  whether written as `Name: value`, `name=value` or as a quoted key in a dict/JSON repr;
* the value of any key whose name mentions a password, secret, token, API key, session,
  CSRF, credential or private key (`password=…`, `"api_key": "…"`, `new_password: …`);
* a password hash (`$argon2id$…`), a gateway API key (`gw_key_…`), a JWT (`eyJ….….…`),
  a `Bearer`/`Basic` credential, the password of a URL (`scheme://user:pass@host`), any
  opaque token-shaped run of 40 or more URL-safe characters (session, CSRF, reset and
  invitation tokens);
* any value registered with `register_secret` (resolved secret references, database URLs).

It is a safety net under the rule that code never logs secrets, not a licence to do so.
"""

from __future__ import annotations

import re
import threading

MASK = "<redacted>"
MIN_SECRET_LENGTH = 6
"""Registered values shorter than this are ignored: masking them would shred ordinary text."""

_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|set-cookie|cookie)(['\"]?\s*[:=]\s*)"
    r"(?:\"[^\"\r\n]*\"|'[^'\r\n]*'|[^\r\n,}\]]*)"
)
_KEY_VALUE = re.compile(
    r"(?i)([\w.-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|session|csrf|credential|"
    r"private[_-]?key)[\w.-]*)(['\"]?\s*[:=]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,;&}\])'\"]+)"
)
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]+")
_API_KEY = re.compile(r"\bgw_key_[0-9A-Za-z_]*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:]*):[^/@\s]*@")
_PASSWORD_HASH = re.compile(r"\$argon2(?:id|i|d)\$[^\s'\";)\]}]*")
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}(?![A-Za-z0-9_-])")
_QUICK = re.compile(
    r"(?i)auth|cookie|passw|pwd|secret|token|key|session|csrf|credential|bearer|basic|digest"
    r"|eyJ|://|argon2|[A-Za-z0-9_-]{40}"
)


class _Secrets:
    """The registry of literal secret values (thread-safe; longest value masked first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        if len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value not in self.values:
                self.values = tuple(sorted({*self.values, value}, key=len, reverse=True))


_SECRETS = _Secrets()


def register_secret(value: str | None) -> None:
    """Masks `value` in everything `redact` sees from now on (short values are ignored)."""
    if value:
        _SECRETS.add(value)


def _mask_literals(text: str) -> str:
    for value in _SECRETS.values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact(text: str) -> str:
    """`text` with every credential listed in the module docstring replaced by `<redacted>`."""
    text = _mask_literals(text)
    if _QUICK.search(text) is None:
        return text  # the common case: nothing credential-shaped, no substitutions run
    text = _HEADER.sub(rf"\1\2{MASK}", text)
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _JWT.sub(MASK, text)
    text = _PASSWORD_HASH.sub(MASK, text)
    text = _API_KEY.sub(MASK, text)
    text = _SCHEME_CREDENTIAL.sub(rf"\1 {MASK}", text)
    text = _KEY_VALUE.sub(rf"\1\2{MASK}", text)
    return _OPAQUE.sub(MASK, text)
