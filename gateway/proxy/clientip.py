"""The client IP: from the socket peer, or from forwarding headers set by trusted proxies.

``X-Forwarded-For`` and ``Forwarded`` are client-writable. They are read only when the
socket peer is a configured trusted proxy, and then only as far as the chain of trusted
proxies reaches: the client is the right-most hop that is not a trusted proxy.

A request over a unix socket has no peer address (``peer is None``). It is represented by
:data:`UNIX_PEER` (``"0.0.0.0"``), a valid address that no real TCP peer can have, so rate
limiting and logging need no special case. Its forwarding headers are honoured only if the
:class:`TrustedProxies` was built with ``trust_unix_socket=True``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

__all__ = [
    "UNIX_PEER",
    "TrustedProxies",
    "parse_forwarded_for",
    "parse_node",
    "rate_limit_key_ip",
    "resolve_client_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNIX_PEER = "0.0.0.0"  # noqa: S104 - a sentinel address, never bound
"""The client IP reported for a unix-socket peer."""

_CACHE_MAX = 4096


def _parse_ip(text: str) -> IPAddress | None:
    """Parse a bare address; None if invalid.

    IPv4-mapped IPv6 becomes its IPv4 address and an IPv6 zone (``%eth0``) is dropped, so
    the text of the result never carries client-chosen characters.
    """
    # SECURITY: ipaddress accepts almost any zone text; dropping it keeps hop text out of
    # client_ip (logs, headers, rate-limit keys).
    host, _, _ = text.partition("%")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _valid_port(port: str) -> bool:
    # RFC 7239 node-port: a decimal port or an obfuscated "_token".
    if port.isdigit():
        return len(port) <= 5
    return len(port) > 1 and port[0] == "_" and all(c.isalnum() or c in "._-" for c in port)


def _parse_node(node: str) -> IPAddress | None:
    s = node.strip()
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        s = s[1:-1].strip()
    if not s:
        return None
    if s[0] == "[":
        end = s.find("]")
        if end < 0:
            return None
        host, rest = s[1:end], s[end + 1 :]
        if rest and not (rest[0] == ":" and _valid_port(rest[1:])):
            return None
        # Brackets enclose IPv6 literals only (an IPv4-mapped one included).
        return _parse_ip(host) if ":" in host else None
    if s.count(":") == 1:
        host, port = s.split(":")
        if not _valid_port(port):
            return None
        addr = _parse_ip(host)
        return addr if addr is not None and addr.version == 4 else None
    return _parse_ip(s)


def parse_node(node: str) -> str | None:
    """Parse one forwarding hop into a normalised IP string, or None if it is not an IP.

    Accepts ``192.0.2.1``, ``192.0.2.1:8080``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:4711``, with surrounding whitespace and double quotes removed.
    Guarantees: the result is ``str()`` of an ``ipaddress`` address (IPv4-mapped IPv6 as
    IPv4, no zone); ``unknown``, obfuscated identifiers and anything else give None.
    """
    addr = _parse_node(node)
    return None if addr is None else str(addr)


def _split_quoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double-quoted strings (with backslash escapes)."""
    parts: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_forwarded_for(values: Iterable[str]) -> list[str]:
    """Return the raw ``for=`` value of every RFC 7239 ``Forwarded`` element, in order.

    ``values`` are all ``Forwarded`` header occurrences. Guarantees: one entry per element
    (comma-separated, quotes respected), left to right; an element without ``for=`` gives
    ``""`` so it still counts as a (malformed) hop. Values keep their quotes; pass them to
    :func:`parse_node`.
    """
    hops: list[str] = []
    for value in values:
        for element in _split_quoted(value, ","):
            if not element.strip():
                continue
            found = ""
            for pair in _split_quoted(element, ";"):
                key, eq, val = pair.partition("=")
                if eq and key.strip().lower() == "for":
                    found = val.strip()
                    break
            hops.append(found)
    return hops


class TrustedProxies:
    """The networks whose forwarding headers the gateway believes.

    Built once from the configured CIDRs. Lookups are cached in a bounded dict (the inputs are
    client-controlled strings, so the cache is cleared when it reaches its bound).
    """

    __slots__ = ("_cache", "_v4", "_v6", "trust_unix_socket")

    def __init__(self, networks: Sequence[IPNetwork], *, trust_unix_socket: bool = False) -> None:
        self._v4: tuple[ipaddress.IPv4Network, ...] = tuple(
            n for n in networks if isinstance(n, ipaddress.IPv4Network)
        )
        v6: list[ipaddress.IPv6Network] = []
        for n in networks:
            if isinstance(n, ipaddress.IPv6Network):
                v6.append(n)
        self._v6: tuple[ipaddress.IPv6Network, ...] = tuple(v6)
        self.trust_unix_socket = trust_unix_socket
        self._cache: dict[str, tuple[str | None, bool]] = {}

    def __bool__(self) -> bool:
        """True if any network or the unix socket is trusted."""
        return bool(self._v4 or self._v6 or self.trust_unix_socket)

    def _addr_trusted(self, addr: IPAddress) -> bool:
        if isinstance(addr, ipaddress.IPv4Address):
            return any(addr in n for n in self._v4)
        return any(addr in n for n in self._v6)

    def classify(self, hop: str) -> tuple[str | None, bool]:
        """Return ``(normalised_ip, trusted)`` for a hop string (see :func:`parse_node`).

        Guarantees: a hop that is not an IP gives ``(None, False)``.
        """
        hit = self._cache.get(hop)
        if hit is not None:
            return hit
        addr = _parse_node(hop)
        result = (None, False) if addr is None else (str(addr), self._addr_trusted(addr))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[hop] = result
        return result

    def trusts(self, ip: str) -> bool:
        """Return True iff ``ip`` (IPv4-mapped IPv6 read as IPv4) is in a trusted network."""
        return self.classify(ip)[1]


def resolve_client_ip(
    peer: str | None, xff: list[str], forwarded: list[str], trusted: TrustedProxies
) -> tuple[str, list[str]]:
    """Return ``(client_ip, verified_chain)`` for a request.

    ``peer`` is the socket peer (None for a unix socket); ``xff`` and ``forwarded`` are all
    occurrences of ``X-Forwarded-For`` and ``Forwarded``.

    Guarantees:

    * If the peer is not trusted, the client is the peer and the headers are ignored.
    * Otherwise the hops of ``X-Forwarded-For`` (or, when it is absent, the ``for=`` values
      of ``Forwarded``) are walked right to left, skipping trusted proxies; the client is the
      right-most untrusted hop, or the left-most hop if all are trusted.
    * A hop that is not an IP (``unknown``, obfuscated, garbage, empty) stops the walk; the
      client is then the last valid hop examined (or the peer). ``client_ip`` is therefore
      always a normalised IP address (or :data:`UNIX_PEER`), never a client-chosen string,
      except an unparsable ``peer`` given by the caller, which is returned unchanged.
    * ``verified_chain`` runs from the client to the peer, both included (``[client]`` when
      the peer is the client): feed it to ``set_forwarded_headers(prior_chain=...)``.
    """
    if peer is None:
        peer_ip: str | None = UNIX_PEER
        peer_trusted = trusted.trust_unix_socket
        peer_str = UNIX_PEER
    else:
        peer_ip, peer_trusted = trusted.classify(peer)
        peer_str = peer_ip if peer_ip is not None else peer
    # SECURITY: forwarding headers are client-forgeable; only a trusted peer may vouch for them.
    if not peer_trusted:
        return peer_str, [peer_str]

    hops = [h for v in xff for h in v.split(",")] if xff else parse_forwarded_for(forwarded)
    chain = [peer_str]
    client = peer_str
    for hop in reversed(hops):
        ip, hop_trusted = trusted.classify(hop)
        if ip is None:
            # SECURITY: a garbage hop could only come from the client side of the chain;
            # stop here rather than let it (or anything left of it) become the client IP.
            break
        chain.append(ip)
        client = ip
        if not hop_trusted:
            break
    chain.reverse()
    return client, chain


@functools.lru_cache(maxsize=4096)
def rate_limit_key_ip(ip: str) -> str:
    """Return the rate-limit key for a client IP.

    Guarantees: an IPv4 address (or IPv4-mapped IPv6) is returned as its IPv4 text; an IPv6
    address is reduced to its /64 network (``2001:db8:1:2::/64``); anything else is returned
    unchanged. Memoised (bounded LRU): a pure function of its argument, asked per request.
    """
    addr = _parse_ip(ip)
    if addr is None:
        return ip
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr)
    # SECURITY: one subscriber typically holds a whole /64; keying on the full address would
    # let a client rotate addresses to escape its limit.
    net = ipaddress.IPv6Network((int(addr) >> 64 << 64, 64))
    return str(net)
