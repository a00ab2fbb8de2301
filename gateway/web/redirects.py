"""Validation of post-sign-in redirect targets (the ``rd`` parameter).

The hosted pages (``/.gateway/login``, ``/.gateway/signup``, ``/.gateway/mfa``,
``/.gateway/logout``) redirect the browser to ``rd`` once they are done. ``rd`` is attacker
controlled (it arrives in a link anyone can craft), so an unchecked value turns the gateway into
an open redirector: a phishing link on our trusted host that lands the victim, freshly signed in,
on ``evil.com``.

The rule is an allow-list, not a block-list: ``rd`` is accepted only if it is a path-absolute
reference on this host (``/`` followed by a non-``/`` character), made only of printable ASCII,
and still such a reference after every layer of percent-decoding a browser, framework or proxy
might apply. Everything else falls back to the caller's default.

Prior art this guards against (each has a test payload in ``tests/unit/test_redirects.py``):

- oauth2-proxy CVE-2020-11053 / GHSA-j7px-6hwj-hpjg: encoded whitespace (``%09``, ``%0a``,
  ``%0b``, ``%0d``) between the slashes of ``/%09/evil.com`` passed validation; browsers strip
  ASCII tab and newline from URLs, leaving the protocol-relative ``//evil.com``.
- oauth2-proxy CVE-2020-5233 / GHSA-qqxw-m5fj-f7gv and CVE-2020-4037 / GHSA-5m6c-jp6f-2vcv:
  further bypasses of the same redirect check. The class includes ``/\\evil.com``: browsers
  treat ``\\`` as ``/`` in http(s) URLs, so it is ``//evil.com`` again.
- oauth2-proxy CVE-2021-21291 / GHSA-4mf2-f3wh-gvf2 (as cited in the design brief): an
  allow-listed-domain check bypassed with a crafted host. We never accept a host at all, so
  there is no domain check to bypass.
- The generic open-redirect corpus: ``//evil.com``, ``/%2f%2fevil.com``, ``/%252f%252fevil.com``
  (double encoding), ``javascript:``, ``data:``, leading whitespace or control characters before a
  scheme, CRLF header injection (``%0d%0a``), and Unicode look-alikes that IDNA/NFKC maps to ``/``
  or ``.`` (fullwidth solidus ``U+FF0F``, ideographic full stop ``U+3002``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

__all__ = ["MAX_REDIRECT_LENGTH", "safe_redirect_target"]

MAX_REDIRECT_LENGTH = 2048
"""Longest ``rd`` accepted, in characters."""

# How many nested layers of percent-encoding we unwrap before giving up. A legitimate path is
# encoded at most once or twice (a path inside ``rd`` inside a query string); anything deeper is
# rejected rather than reasoned about.
_MAX_DECODE_ROUNDS = 4

# Every byte allowed in ``rd``, raw and after each decode: printable ASCII minus space and
# backslash. Excludes C0 controls, DEL, all whitespace and every non-ASCII code point.
_SAFE_BYTES = frozenset(range(0x21, 0x7F)) - {ord("\\")}
# In the decoded query and fragment a space is also allowed: it cannot start a scheme or an
# authority there, and browsers do not strip interior spaces.
_SAFE_QUERY_BYTES = _SAFE_BYTES | {0x20}

# A ``%`` must introduce exactly two hex digits.
_MALFORMED_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")

# The gateway's own namespace. Redirecting there after sign-in makes loops (``/.gateway/login``)
# or turns a login link into a sign-out link (``/.gateway/logout``); only the operator console is
# a legitimate place to return to.
_GATEWAY_PREFIX = "/.gateway"
_GATEWAY_ALLOWED = ("/.gateway/console",)


def safe_redirect_target(rd: str | None, default: str = "/") -> str:
    """Return ``rd`` if it is a safe same-host relative path, else ``default``.

    Guarantees, when the result is ``rd`` (returned unchanged, character for character):

    - it is 1 to ``MAX_REDIRECT_LENGTH`` characters of printable ASCII with no space and no
      backslash, so it is a valid ``Location`` header value and cannot inject header lines;
    - it is ``/`` alone or ``/`` followed by a character other than ``/`` and ``\\``, so every
      browser resolves it against the current origin (no scheme, no authority); the same holds
      after up to ``_MAX_DECODE_ROUNDS`` rounds of percent-decoding and after dot-segment
      removal, so a later decode or path normalization cannot turn it into ``//host``;
    - no percent-decoding of it yields control characters, backslashes or non-ASCII bytes, nor
      whitespace, except an encoded space (``%20``) in the query or fragment;
    - its path does not lie under ``/.gateway/`` (case-insensitively, after decoding and
      dot-segment removal), except ``/.gateway/console`` and below.

    ``@`` and ``:`` are accepted anywhere after the leading ``/``: once a reference starts with a
    single ``/`` it has no authority component, so ``/@evil.com`` is the path ``/@evil.com`` on
    this host, never userinfo, and ``/javascript:x`` is a path, never a scheme.

    Non-ASCII paths (raw or percent-encoded UTF-8) are rejected outright, including legitimate
    ones such as ``/caf%C3%A9``; the user then lands on ``default``. This trades a convenience
    for not having to track which code points browsers map to ``/``, ``\\`` or ``.``.

    ``default`` is trusted and returned as given; callers must pass a constant.
    """
    # SECURITY: open redirect; empty or missing rd must not fall through to any other source.
    if not rd:
        return default
    # SECURITY: resource exhaustion and oversized Location headers from a crafted link.
    if len(rd) > MAX_REDIRECT_LENGTH:
        return default
    # SECURITY: oauth2-proxy-style `/\evil.com` and `/<TAB>/evil.com` (CVE-2020-11053); browsers
    # read `\` as `/` and drop tab/CR/LF, and CR/LF would also split the Location header
    # (response splitting). Also rejects fullwidth solidus and other non-ASCII that IDNA/NFKC
    # folds into `/` or `.`.
    if not _safe_chars(rd):
        return default
    # SECURITY: scheme (`javascript:`, `http:`, `data:`) or protocol-relative `//evil.com` target;
    # requiring exactly one leading `/` leaves no room for either.
    if not _is_single_slash_path(rd):
        return default
    # SECURITY: `%` sequences that different decoders disagree on (`%%32f`, `%2`) could decode to
    # `/` in one layer but not in the one we check; refuse rather than guess.
    if _MALFORMED_PERCENT.search(rd):
        return default

    # The raw path (before the first `?` or `#`) is what a browser resolves; the query and
    # fragment can never become a scheme or authority once the path starts with a single `/`.
    split = _path_end(rd)
    path_layers = _decode_layers(rd[:split], _SAFE_BYTES, must_be_path=True)
    # SECURITY: encoded `%2f%2f`, `%5c`, `%0d%0a`, `%09`, `%00`, `%EF%BC%8F` in the path become
    # `//`, `\`, CRLF or look-alikes once a browser or a later framework decodes the value, and
    # `%25`-nesting beyond the decode budget hides such a payload from a bounded check.
    if path_layers is None:
        return default
    # SECURITY: CRLF/NUL smuggled in an encoded query (`?x=%0d%0aSet-Cookie:`) splits headers if a
    # later layer decodes the whole value; an encoded space there is harmless and is allowed so
    # that `/search?q=a%20b` survives sign-in.
    if _decode_layers(rd[split:], _SAFE_QUERY_BYTES, must_be_path=False) is None:
        return default

    # Every decoding layer, whole and cut at a decoded `?`/`#`, with dot segments removed the way
    # a browser or router would: each must stay a single-slash path outside `/.gateway`.
    candidates = {p for layer in path_layers for p in (layer, layer[: _path_end(layer)])}
    for candidate in candidates:
        path = _normalize_path(candidate)
        # SECURITY: `/./%2f/evil.com` or `/a/..//evil.com` normalize to the path `//evil.com`,
        # which a later re-parse of the path alone (`Location: <request.path>`) reads as a host.
        if path.startswith("//"):
            return default
        # SECURITY: redirect loop / login-CSRF: `rd=/.gateway/logout` signs the user straight
        # out, `rd=/.gateway/login` loops; `/.GATEWAY/%6cogout` and `/x/../.gateway/logout` too.
        if _in_gateway_namespace(path):
            return default
    return rd


def _safe_chars(value: str) -> bool:
    """True if every character is printable ASCII other than space and backslash."""
    return all(ord(ch) in _SAFE_BYTES for ch in value)


def _is_single_slash_path(value: str) -> bool:
    """True if ``value`` is ``/`` alone or ``/`` followed by neither ``/`` nor ``\\``."""
    if not value.startswith("/"):
        return False
    return len(value) == 1 or value[1] not in "/\\"


def _path_end(value: str) -> int:
    """Index where the path of a reference ends (its first ``?`` or ``#``, else its length)."""
    end = len(value)
    for sep in "?#":
        idx = value.find(sep)
        if idx != -1:
            end = min(end, idx)
    return end


def _decode_layers(value: str, allowed: frozenset[int], *, must_be_path: bool) -> list[str] | None:
    """Percent-decode ``value`` until it stops changing and return every layer, ``value`` first.

    Returns None if any decoded layer has a byte outside ``allowed``, if ``must_be_path`` and any
    layer is not a single-slash path, or if the value is still changing after
    ``_MAX_DECODE_ROUNDS`` rounds.
    """
    layers = [value]
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote_to_bytes(layers[-1])
        if not all(b in allowed for b in decoded):
            return None
        text = decoded.decode("ascii")
        if must_be_path and not _is_single_slash_path(text):
            return None
        if text == layers[-1]:
            return layers
        layers.append(text)
    return None


def _normalize_path(path: str) -> str:
    """Remove ``.`` and ``..`` segments the way RFC 3986 section 5.2.4 does for an absolute path.

    Empty segments (``//``) are kept, since browsers keep them too.
    """
    segments = path.split("/")[1:]
    out: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _in_gateway_namespace(path: str) -> bool:
    """True if ``path`` is under ``/.gateway`` and not an allowed return target there."""
    # Collapse repeated slashes: some routers and proxies merge them (`/.gateway//logout`).
    lowered = re.sub(r"/{2,}", "/", path.lower())
    if lowered != _GATEWAY_PREFIX and not lowered.startswith(_GATEWAY_PREFIX + "/"):
        return False
    for allowed in _GATEWAY_ALLOWED:
        if lowered == allowed or lowered.startswith(allowed + "/"):
            return False
    return True
