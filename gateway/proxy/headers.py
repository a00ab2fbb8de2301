"""Header filtering for the reverse proxy: what goes upstream, what comes back.

Everything here runs on every proxied request, so the sets are precomputed and each
function makes a single pass over the headers it is given.

Header names are compared in two ways:

* *canonical* (:func:`canonical_name`): lower-case, with ``_`` and ``.`` read as ``-``. Used for
  every header the gateway owns or refuses, because many upstream stacks (CGI/WSGI/Rack,
  some frameworks) fold ``X_User_Id`` and ``X-User-Id`` into the same variable.
* *lower-case only*: used for names listed in a ``Connection`` header, which names fields
  exactly (case-insensitively) as RFC 9110 §7.6.1 defines.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Mapping
from typing import cast

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy, MultiMapping

__all__ = [
    "DEFAULT_OWNED_HEADERS",
    "DEFAULT_OWNED_PREFIXES",
    "HOP_BY_HOP",
    "METHOD_OVERRIDE_HEADERS",
    "REQUEST_ID_RE",
    "OwnedHeaders",
    "build_response_headers",
    "build_upstream_request_headers",
    "canonical_name",
    "is_websocket_upgrade",
    "new_request_id",
    "response_headers",
    "set_forwarded_headers",
    "upgrade_protocol",
    "valid_request_id",
]

HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
"""Connection-specific fields (RFC 9110 §7.6.1 plus legacy ones), lower-case."""

METHOD_OVERRIDE_HEADERS: frozenset[str] = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override"}
)
"""Headers some frameworks use to replace the request method, lower-case."""

DEFAULT_OWNED_HEADERS: tuple[str, ...] = (
    # Identity headers under their default names and under the oauth2-proxy preset.
    "X-Tenant-Id",
    "X-Tenant-Slug",
    "X-User-Id",
    "X-User-Email",
    "X-User-Roles",
    "X-Auth-Method",
    "X-Tenant-Features",
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Access-Token",
    # Tenant selector (consumed, never forwarded), assertion, correlation, tracing.
    "X-Tenant",
    "X-Gateway-Assertion",
    "X-Request-Id",
    "traceparent",
    "tracestate",
    # Client address and scheme, which the gateway sets itself.
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "Forwarded",
    "X-Real-IP",
)
"""Headers :class:`OwnedHeaders` always owns, whatever the configuration adds."""

DEFAULT_OWNED_PREFIXES: tuple[str, ...] = ("x-auth-request-",)
"""Canonical name prefixes :class:`OwnedHeaders` always owns (auth-request response style)."""

_CANON_TABLE = str.maketrans({"_": "-", ".": "-"})

# Content-Length is never removed because a Connection header names it: the body was framed
# by it, and the forwarder decides how to re-frame.
_CONNECTION_PROTECTED: frozenset[str] = frozenset({"content-length"})


def canonical_name(name: str) -> str:
    """Return the canonical form of a header name.

    Guarantees: the result is lower-case and contains no ``_`` or ``.`` (both become ``-``),
    so ``X_User_Id``, ``x.user.id`` and ``X-USER-ID`` all give ``x-user-id``.
    """
    return name.lower().translate(_CANON_TABLE)


def _canon(name: str) -> str:
    # Hot-path variant of canonical_name: skip translate() for the usual dash-only names.
    n = name.lower()
    if "_" in n or "." in n:
        n = n.translate(_CANON_TABLE)
    return n


KEEP, DROP, CONNECTION = 0, 1, 2
"""`OwnedHeaders.request_verdict`: forward the header; drop it; drop it and read its value
as the list of connection-specific names (`Connection`)."""
VERDICT_ENTRIES = 1024
VERDICT_MAX_NAME = 64


class OwnedHeaders:
    """The set of header names the gateway owns, matched in canonical form.

    Built once at start-up. Always includes :data:`DEFAULT_OWNED_HEADERS` and
    :data:`DEFAULT_OWNED_PREFIXES`, plus the configured ``names`` and ``prefixes``.
    """

    __slots__ = ("_names", "_prefixes", "_request_strip", "_verdicts")

    def __init__(self, names: Iterable[str] = (), *, prefixes: Iterable[str] = ()) -> None:
        # SECURITY: the defaults are always owned so a configuration that renames identity
        # headers (or forgets one) still strips client-forged copies of the usual names.
        owned = {canonical_name(n) for n in (*DEFAULT_OWNED_HEADERS, *names)}
        self._names: frozenset[str] = frozenset(owned)
        self._prefixes: tuple[str, ...] = tuple(
            sorted({canonical_name(p) for p in (*DEFAULT_OWNED_PREFIXES, *prefixes) if p})
        )
        # Everything build_upstream_request_headers drops by canonical name, in one set.
        self._request_strip: frozenset[str] = (
            self._names | HOP_BY_HOP | METHOD_OVERRIDE_HEADERS | {"host"}
        )
        # Header name as received -> `request_verdict`; names repeat from request to request.
        self._verdicts: dict[str, int] = {}

    def request_verdict(self, name: str) -> int:
        """What `build_upstream_request_headers` does with a header of this exact spelling:
        `KEEP`, `DROP`, or `CONNECTION` (dropped, its value read for listed names).

        Remembered per spelling, for at most `VERDICT_ENTRIES` short names: names are chosen
        by clients, so a flood of distinct ones is computed each time, never stored.
        """
        verdict = self._verdicts.get(name)
        if verdict is not None:
            return verdict
        c = _canon(name)
        if c in self._request_strip:
            verdict = CONNECTION if c == "connection" else DROP
        elif self._prefixes and c.startswith(self._prefixes):
            verdict = DROP
        else:
            verdict = KEEP
        if len(name) <= VERDICT_MAX_NAME and len(self._verdicts) < VERDICT_ENTRIES:
            self._verdicts[name] = verdict
        return verdict

    @property
    def names(self) -> frozenset[str]:
        """The owned names, canonical."""
        return self._names

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The owned name prefixes, canonical."""
        return self._prefixes

    def contains(self, name: str) -> bool:
        """Return True if ``name``, in any case and with ``_``/``.`` for ``-``, is owned."""
        c = _canon(name)
        return c in self._names or c.startswith(self._prefixes)

    __contains__ = contains


def _connection_tokens(values: Iterable[str]) -> set[str]:
    """Lower-cased field names listed in Connection header values (all occurrences)."""
    tokens: set[str] = set()
    for value in values:
        for tok in value.split(","):
            tok = tok.strip().lower()
            if tok:
                tokens.add(tok)
    return tokens


def build_upstream_request_headers(
    inbound: Mapping[str, str], owned: OwnedHeaders
) -> CIMultiDict[str]:
    """Copy the inbound request headers that may reach the upstream.

    ``inbound`` is a ``CIMultiDictProxy`` (all duplicates are seen) or any mapping.

    Guarantees about the result:

    * no hop-by-hop header (:data:`HOP_BY_HOP`), matched in canonical form;
    * no header named in any inbound ``Connection`` value (all occurrences, comma lists),
      except ``Content-Length``, which is kept for framing;
    * no owned header (:meth:`OwnedHeaders.contains`) in any spelling, including duplicates;
    * no method-override header (:data:`METHOD_OVERRIDE_HEADERS`) in any spelling;
    * no ``Host`` (the forwarder sets it);
    * every other header, ``Content-Length`` included, with its original name spelling,
      order and duplicates.

    The result carries no ``Connection`` header, and the gateway injects its own identity
    headers into the returned dict afterwards, so a client ``Connection`` header naming an
    owned header can never remove the gateway's copy.
    """
    verdicts = owned._verdicts
    kept: list[tuple[str, str]] = []
    connection_values: list[str] = []
    for name, value in inbound.items():
        verdict = verdicts.get(name)
        if verdict is None:
            verdict = owned.request_verdict(name)
        if verdict == KEEP:
            kept.append((name, value))
        elif verdict == CONNECTION:
            connection_values.append(value)
        # SECURITY: forged identity/forwarding headers, hop-by-hop framing headers and
        # method overrides (DROP) must not reach the upstream in any spelling.

    if not connection_values:
        return CIMultiDict(kept)
    listed = _connection_tokens(connection_values) - HOP_BY_HOP - _CONNECTION_PROTECTED
    if listed:
        out: CIMultiDict[str] = CIMultiDict()
        # SECURITY: fields the client marked connection-specific are not forwarded (RFC 9110
        # §7.6.1); owned headers are already gone and are injected after this, so naming
        # them cannot strip the gateway's copies.
        for name, value in kept:
            if name.lower() not in listed:
                out.add(name, value)
        return out
    return CIMultiDict(kept)


def build_response_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    """Copy the upstream response headers that may reach the client.

    ``upstream`` is a ``CIMultiDictProxy`` (all duplicates are seen) or any mapping.

    Guarantees: hop-by-hop headers and headers named by the upstream's ``Connection`` header
    are removed; everything else is kept in order with duplicates (``Set-Cookie``).
    ``Content-Length`` is always kept, even if ``Connection`` names it: whether to keep it
    (body passed through unchanged) or drop it (body re-framed, e.g. decoded or streamed
    chunked) is the forwarder's decision, not this function's.
    """
    return response_headers(upstream.items())


def response_headers(pairs: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """:func:`build_response_headers` over (name, value) pairs in wire order."""
    out: CIMultiDict[str] = CIMultiDict()
    connection_values: list[str] = []
    for name, value in pairs:
        low = name.lower()
        if low in HOP_BY_HOP:
            if low == "connection":
                connection_values.append(value)
            # SECURITY: upstream connection-management headers must not steer the client
            # connection (keep-alive, upgrade, transfer-encoding smuggling).
            continue
        out.add(name, value)
    if connection_values:
        listed = _connection_tokens(connection_values) - HOP_BY_HOP - _CONNECTION_PROTECTED
        for name in listed:
            out.popall(name, None)
    return out


def response_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """:func:`response_headers` as a list in wire order; one pass when the upstream sent no
    `Connection` header (the usual case: nothing else can name headers to drop)."""
    kept = [(name, value) for name, value in pairs if name.lower() not in HOP_BY_HOP]
    if len(kept) == len(pairs) or not any(name.lower() == "connection" for name, _ in pairs):
        return kept
    return list(response_headers(pairs).items())


_MULTIDICTS = frozenset({CIMultiDictProxy, CIMultiDict, MultiDictProxy, MultiDict})


def _getall(headers: Mapping[str, str], name: str) -> list[str]:
    """All values of ``name`` (lower-case), case-insensitively, for multidicts or mappings."""
    # The multidict types first: an isinstance against the ABC costs a Python-level call.
    if type(headers) in _MULTIDICTS or isinstance(headers, MultiMapping):
        return list(cast(MultiMapping[str], headers).getall(name, ()))
    return [v for k, v in headers.items() if k.lower() == name]


def upgrade_protocol(headers: Mapping[str, str]) -> str | None:
    """Return the protocol upgrade the request asks for, or None.

    An upgrade is requested only when a ``Connection`` header lists the token ``upgrade``
    (case-insensitive, comma lists, all occurrences) and an ``Upgrade`` header is present.
    Guarantees: the result is the ``Upgrade`` value(s) lower-cased, with protocols joined by
    ``", "`` (e.g. ``"websocket"``, ``"h2c"``, ``"h2c, websocket"``); ``None`` if no upgrade
    is requested. Callers should accept only exactly ``"websocket"``.
    """
    connection = _getall(headers, "connection")
    if not connection or "upgrade" not in _connection_tokens(connection):
        return None
    protocols = [
        p.strip().lower() for v in _getall(headers, "upgrade") for p in v.split(",") if p.strip()
    ]
    if not protocols:
        return None
    return ", ".join(protocols)


def is_websocket_upgrade(headers: Mapping[str, str]) -> bool:
    """Return True only for a WebSocket upgrade request.

    Guarantees: True iff ``Connection`` lists ``upgrade`` and the ``Upgrade`` header names
    exactly one protocol, ``websocket`` (case-insensitive). ``h2c``, or any list that
    includes another protocol, gives False.
    """
    # SECURITY: h2c (and mixed lists) would let a client tunnel HTTP/2 past the gateway's
    # per-request checks; only a plain websocket upgrade is recognised.
    return upgrade_protocol(headers) == "websocket"


def set_forwarded_headers(
    out: CIMultiDict[str], *, client_ip: str, proto: str, host: str, prior_chain: list[str]
) -> None:
    """Set ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` on ``out``.

    ``prior_chain`` is the verified chain returned by
    :func:`gateway.proxy.clientip.resolve_client_ip` (client first, socket peer last), or
    empty. Guarantees: ``X-Forwarded-For`` is ``client_ip`` alone when ``prior_chain`` is
    empty, else ``prior_chain`` joined by ``", "``; so its left-most entry is always the
    verified client. Each header is set (replacing any value in ``out``), never appended.

    Raises ValueError if ``prior_chain`` is non-empty and does not start with ``client_ip``
    (a caller mix-up that would put an unverified address first).
    """
    if prior_chain:
        if prior_chain[0] != client_ip:
            raise ValueError("prior_chain must start with client_ip")
        xff = ", ".join(prior_chain)
    else:
        xff = client_ip
    # SECURITY: only gateway-verified addresses are emitted; inbound copies were stripped as owned.
    out["X-Forwarded-For"] = xff
    out["X-Forwarded-Proto"] = proto
    out["X-Forwarded-Host"] = host


REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""A well-formed request id, to be used with ``fullmatch``."""


def valid_request_id(value: str | None) -> bool:
    """Return True iff ``value`` is 1..128 characters of ``[A-Za-z0-9._:-]``."""
    # SECURITY: request ids end up in logs and upstream headers; reject anything that could
    # inject log lines, markup or oversized values.
    return value is not None and REQUEST_ID_RE.fullmatch(value) is not None


_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4)))


def new_request_id() -> str:
    """Return a fresh request id (32 lower-case hex characters, always valid).

    A random per-process prefix and a counter: unique across processes and requests without a
    system call per request (a syscall that releases the GIL can wait a whole switch interval
    behind the SQLite thread). Request ids correlate; they are not secrets.
    """
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"
