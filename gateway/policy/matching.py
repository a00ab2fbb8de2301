"""The object and action matching functions the Casbin model calls (`pathMatch`, `actMatch`).

pycasbin's `keyMatch2`/`keyMatch5` turn a rule into a regex without escaping it, so a rule
`/api/v1.0/*` also matches `/api/v1x0/...`, and any `:` starts a parameter. `pathMatch` is the
gateway's replacement and guarantees:

* every character of a rule's object is literal, except
  - a `*` as the **last** character: any rest (also empty). `P/*` additionally matches `P`
    itself, so a deny on `/admin/*` also covers `/admin` but never `/administrator`;
  - a whole segment `:name` or `{name}`: exactly one non-empty segment (no `/`);
* the match is anchored at both ends (`re.fullmatch`);
* a request object inside the gateway's reserved namespace `/.gateway` is matched only by a
  rule whose literal text starts with `/.gateway`, never by a wildcard such as `/*`.

`actMatch` matches an HTTP method or `read` against `*`, one value, or `GET|HEAD` alternatives
(exact, case-sensitive: methods reach the engine upper-case).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

RESERVED_PREFIX: Final = "/.gateway"
_PARAM = re.compile(r"^(?::[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})$")


def is_param_segment(segment: str) -> bool:
    """True for a segment that is a whole `:name` or `{name}` placeholder."""
    return _PARAM.match(segment) is not None


@lru_cache(maxsize=4096)
def compile_path_pattern(pattern: str) -> re.Pattern[str]:
    """The anchored regex for a rule object (see the module docstring); cached per pattern."""
    wildcard = pattern.endswith("*")
    body = pattern[:-1] if wildcard else pattern
    parts = [r"[^/]+" if is_param_segment(seg) else re.escape(seg) for seg in body.split("/")]
    regex = "/".join(parts)
    if wildcard and body.endswith("/"):
        # `P/*` matches `P`, `P/` and everything below `P/`.
        regex = regex[: -len("/")] + r"(?:/.*)?"
    elif wildcard:
        regex += r".*"
    return re.compile(regex, re.DOTALL)


def _reserved(path: str) -> bool:
    return path == RESERVED_PREFIX or path.startswith(RESERVED_PREFIX + "/")


def path_match(path: str, pattern: str) -> bool:
    """True when the request object `path` matches the rule object `pattern`."""
    # SECURITY: tenant roles hold `/*`; without this a tenant admin's wildcard would grant the
    # gateway's own admin API (`/.gateway/admin/...`) once that API authorizes through here.
    if _reserved(path) and not pattern.startswith(RESERVED_PREFIX):
        return False
    return compile_path_pattern(pattern).fullmatch(path) is not None


@lru_cache(maxsize=1024)
def _alternatives(pattern: str) -> frozenset[str]:
    return frozenset(pattern.split("|"))


def act_match(act: str, pattern: str) -> bool:
    """True when the request action `act` is allowed by the rule action `pattern`."""
    return pattern == "*" or act == pattern or act in _alternatives(pattern)
