"""Origin parsing and the same-origin check behind cookie-session CSRF protection.

A state-changing request authenticated by the session cookie is accepted only if the browser
says it came from the gateway's own origin (``Origin``, or ``Referer`` when ``Origin`` is absent)
or carries a valid ``X-CSRF-Token`` (checked elsewhere). This module answers the first half.

Parsing is deliberately stricter than a browser's URL parser: browsers always serialize
``Origin`` and ``Referer`` canonically (lower-case scheme and host, no userinfo, no whitespace),
so anything unusual is either not from a browser or an attempt to exploit a parser difference,
and is treated as "no origin" (fail closed). Hosts are never IDNA-decoded or Unicode-normalized:
browsers send punycode (``xn--``), and we compare those bytes.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["origin_of", "request_origin", "same_origin_request"]

_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Longest URL we bother to parse; Referer can legitimately be long, an origin never is.
_MAX_URL_LENGTH = 8192

# One DNS label: letters, digits, hyphen, and underscore (container and service names use it),
# not starting or ending with a hyphen.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
_SCHEME_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_DECIMAL_OCTET = re.compile(r"0|[1-9][0-9]{0,2}")


def origin_of(url: str) -> str | None:
    """Return the origin ``scheme://host[:port]`` of an absolute http(s) URL, or None.

    Guarantees for a non-None result: the scheme is ``http`` or ``https``; scheme and host are
    lower-case; the host is a syntactically valid hostname, dotted-quad IPv4 address, or bracketed
    IPv6 address in compressed form; the port is present only when it is not the scheme's
    default (80 for http, 443 for https). Path, query and fragment are ignored.

    None for: the opaque origin ``null``; other schemes (``file:``, ``data:``, ``javascript:``);
    userinfo (``https://app@evil.com``); backslashes, whitespace, control or non-ASCII
    characters anywhere; an empty, malformed or out-of-range host or port; URLs over 8192
    characters.
    """
    return _parse_origin(url, allow_path=True)


def request_origin(scheme: str, host: str) -> str | None:
    """Return the origin a request was addressed to, from its scheme and ``Host`` header.

    ``host`` must be a hostname, dotted-quad IPv4 address or bracketed IPv6 address, with an
    optional port; anything else (userinfo, paths, spaces, empty or invalid ports, trailing
    dots, non-ASCII) gives None. The result is normalized exactly as :func:`origin_of` does, so
    it can be compared with the origin of an ``Origin`` header.

    The ``Host`` header is client-supplied. Using it as the allowed origin is still sound for
    CSRF: a victim's browser always sends the real host it is talking to, and it only attaches
    this gateway's cookie when that host is ours. Prefer the configured ``public_url`` when one
    exists, and only pass a forwarded scheme or host that a trusted proxy set.
    """
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        return None
    # SECURITY: Host-header injection; a Host like `evil.com/x` or `a@b` must not yield an origin.
    return _origin_from_authority(scheme, host)


def same_origin_request(origin: str | None, referer: str | None, allowed: frozenset[str]) -> bool:
    """Decide whether a state-changing request provably comes from an allowed origin.

    ``origin`` and ``referer`` are the raw header values, None when the header is absent. If a
    header appears more than once the caller must treat the request as failing this check.
    ``allowed`` holds normalized origins as produced by :func:`origin_of` or
    :func:`request_origin`.

    True only when ``Origin`` is present and is exactly a serialized origin (no path) in
    ``allowed``; or when ``Origin`` is absent and ``Referer`` is an absolute http(s) URL whose
    origin is in ``allowed``. ``Origin: null``, a malformed ``Origin``, or neither header present
    all give False; a present ``Origin`` is never overridden by ``Referer``.
    """
    if origin is not None:
        # SECURITY: CSRF from sandboxed iframes, data: URLs and cross-origin redirect chains, which
        # browsers label `Origin: null`; it is not our origin and must not fall back to Referer.
        if origin.strip().lower() == "null":
            return False
        # SECURITY: CSRF via a look-alike origin (`https://app.example.com.evil.com`, other port,
        # other scheme); only an exact match of the normalized origin is accepted.
        parsed = _parse_origin(origin, allow_path=False)
        return parsed is not None and parsed in allowed
    # SECURITY: CSRF when no header proves the source; a missing Referer (stripped by
    # Referrer-Policy or a privacy tool) is refused rather than trusted.
    if not referer:
        return False
    parsed = origin_of(referer)
    return parsed is not None and parsed in allowed


def _parse_origin(url: str, *, allow_path: bool) -> str | None:
    """Strictly parse ``scheme://authority[path]`` and return the normalized origin or None."""
    if not url or len(url) > _MAX_URL_LENGTH:
        return None
    # SECURITY: parser differentials; browsers drop tabs/newlines and read `\` as `/`, so
    # `https://evil.com\@app.example.com` is evil.com to a browser but app.example.com to a
    # naive parser. Refuse every such character instead of guessing which reading applies.
    if any(not 0x21 <= ord(ch) <= 0x7E or ch == "\\" for ch in url):
        return None
    match = _SCHEME_PREFIX.match(url)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme not in _SCHEMES:
        return None
    rest = url[match.end() :]
    end = len(rest)
    for sep in "/?#":
        idx = rest.find(sep)
        if idx != -1:
            end = min(end, idx)
    if end != len(rest) and not allow_path:
        return None
    return _origin_from_authority(scheme, rest[:end])


def _origin_from_authority(scheme: str, authority: str) -> str | None:
    """Validate ``host[:port]`` and return ``scheme://host[:port]`` normalized, or None."""
    # SECURITY: userinfo (`https://app.example.com@evil.com`) hides the real host from a reader.
    if not authority or "@" in authority:
        return None
    if any(not 0x21 <= ord(ch) <= 0x7E or ch == "\\" for ch in authority):
        return None
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            return None
        host = _ipv6_host(authority[1:close])
        port_part = authority[close + 1 :]
    else:
        host_raw, sep, port_text = authority.partition(":")
        host = _name_or_ipv4_host(host_raw)
        port_part = sep + port_text
    if host is None:
        return None
    if not port_part:
        return f"{scheme}://{host}"
    if not port_part.startswith(":"):
        return None
    port_text = port_part[1:]
    if not _PORT.fullmatch(port_text):
        return None
    port = int(port_text)
    if not 1 <= port <= 65535:
        return None
    if port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _ipv6_host(text: str) -> str | None:
    """Return ``[compressed-ipv6]`` for a valid IPv6 literal without a zone id, else None."""
    if not text or "%" in text:
        return None
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return f"[{address.compressed}]"


def _name_or_ipv4_host(text: str) -> str | None:
    """Return a lower-cased hostname or canonical dotted-quad IPv4 address, else None."""
    host = text.lower()
    if not host or len(host) > 253:
        return None
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    # A browser parses a host whose last label is numeric as IPv4 (`127.1`, `0x7f.1`,
    # `999.0.0.1` is an error). Accept only the canonical dotted quad it would emit.
    last = labels[-1]
    if last.isdigit() or last.startswith("0x"):
        if len(labels) != 4 or not all(_DECIMAL_OCTET.fullmatch(label) for label in labels):
            return None
        if not all(int(label) <= 255 for label in labels):
            return None
    return host
