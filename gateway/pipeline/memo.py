"""Bounded memos of the pure per-request derivations of the proxy chain.

Most requests a gateway sees repeat the same few hosts and paths, so what the chain derives
from them alone (the route, the tenant a request names) is computed once and then looked up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

MEMO_ENTRIES = 4096
"""Distinct argument tuples a memo holds (the least recently used is dropped first)."""
MEMO_MAX_KEY = 512
"""Most characters of string arguments a caller may memoize; longer arguments are computed
every time, so a flood of long distinct targets costs what the function costs and a memo
holds at most `MEMO_ENTRIES` times `MEMO_MAX_KEY` characters of keys."""


def pure_memo(fn: F) -> F:
    """`fn` memoized per argument tuple (C `lru_cache`: a hit costs one dict lookup).

    Guarantees: the result equals `fn(*args)` provided `fn` is pure, i.e. its result depends
    on its arguments alone for the memo's life. Bind the memo to the object whose
    configuration `fn` reads (one memo per stage instance, rebuilt with the chain), never to
    state that changes at run time. An exception from `fn` propagates and is not remembered.
    Callers check `MEMO_MAX_KEY` before calling (inline: a wrapper would cost more than the
    lookup saves).
    """
    return functools.lru_cache(maxsize=MEMO_ENTRIES)(fn)  # type: ignore[return-value]
