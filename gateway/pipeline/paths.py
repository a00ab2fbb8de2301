"""The request-path normalizer: one canonical path for the policy engine and the upstream.

`normalize_path` turns the raw request path (aiohttp's `request.raw_path` without the query)
into the single string that routing, public-path matching, Casbin and the forwarded request
all use. It either returns a path that no reasonable upstream can resolve into a different
resource, or refuses the request with `PathRejected` and a kebab-case `reason`.

Canonical form (RFC 3986 section 6.2.2, tightened):

* starts with `/`; no empty segments (`//` collapsed); no `.` or `..` segments;
* percent-escapes of unreserved characters (`A-Za-z0-9-._~`) are decoded, every other escape is
  kept with upper-case hex digits;
* raw ASCII characters that RFC 3986 does not allow in a path but that clients send anyway
  (`"`, `<`, `>`, `` ` ``, `{`, `}`, `|`, `^`, `[`, `]`, `#`, `?`) are percent-encoded, so that
  `/a|b` and `/a%7Cb` are one path to the policy and the upstream;
* a trailing slash is kept (`/a/b/` stays, `/a/./` is `/a/`, `/a/..` is `/`).

Decisions where the contract is silent:

* **Raw non-ASCII is refused** (`non-ascii`). A request target is ASCII (RFC 9112 section 3.2);
  aiohttp hands us a `str` decoded from the wire bytes, so re-encoding it would mean guessing the
  bytes the client sent, and every mainstream client percent-encodes. Percent-encoded UTF-8
  (`/caf%C3%A9`) is accepted and kept encoded.
* **Percent-encoded bytes >= 0x80 must be valid UTF-8** (else `bad-percent-encoding`). This
  refuses overlong forms such as `%C0%AE` (a lenient decoder's `.`); paths in legacy 8-bit
  encodings are refused as a consequence.
* **Encoded non-ASCII that Unicode compatibility folding (NFKC) turns into a delimiter** is
  refused (`non-ascii`): a fullwidth solidus `%EF%BC%8F`, a segment that folds to `.` or `..`
  (`%EF%BC%8E%EF%BC%8E`), or characters folding to `\\`, `;`, `%`, `?`, `#`. Encoded C1 control
  characters and Unicode line/paragraph separators are `control-character`.
* **A raw space is refused as `control-character`.** Space delimits the HTTP request line; a raw
  one inside the target means a lenient parser already split the line, and upstreams disagree on
  what it means. An encoded space (`%20`) is an ordinary kept escape.
* **`%25` followed by two hex digits is refused** (`double-encoding`) even where it could be a
  literal `%` followed by text (`/100%25ab`), because a double-decoding upstream would read it
  as an escape. `%25` followed by anything else is a literal percent and kept.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Final, Literal, get_args
from urllib.parse import unquote_to_bytes

__all__ = [
    "REJECT_REASONS",
    "PathPattern",
    "PathRejectReason",
    "PathRejected",
    "compile_pattern",
    "normalize_path",
    "path_matches",
]

PathRejectReason = Literal[
    "encoded-slash",
    "backslash",
    "control-character",
    "path-parameter",
    "double-encoding",
    "dot-segment-escape",
    "bad-percent-encoding",
    "not-absolute",
    "non-ascii",
]

REJECT_REASONS: Final[frozenset[str]] = frozenset(get_args(PathRejectReason))


class PathRejected(Exception):
    """The raw path cannot be given one safe meaning; `reason` is a kebab-case code.

    `reason` is one of `REJECT_REASONS` and safe to show to the client; `str(exc)` adds a short
    detail that never echoes the path.
    """

    def __init__(self, reason: PathRejectReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: PathRejectReason = reason


_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters kept raw in the output: pchar without `%` (RFC 3986 section 3.3) minus `;`, plus `/`.
_RAW_OK: Final = _UNRESERVED | frozenset("!$&'()*+,=:@/")
_HEX: Final = frozenset("0123456789ABCDEFabcdef")

# A path already in canonical form: only `_RAW_OK` characters, no empty segment, no `.` or `..`
# segment. Segments are separated by `/`, which the segment class excludes, so the match is
# linear. Such a path is returned unchanged (the same object).
_CANONICAL: Final = re.compile(r"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9\-._~!$&'()*+,=:@]+)+/?|/")
_DOUBLE_ENCODED: Final = re.compile(r"%25[0-9A-Fa-f]{2}")
_HIGH_ESCAPE: Final = re.compile(r"%[89A-F][0-9A-F]")
# What NFKC must not produce from an encoded non-ASCII character.
_FOLD_DELIMITERS: Final = frozenset("/\\;%?#")


def normalize_path(raw: str) -> str:
    """Return the canonical form of the raw request path `raw` (no query), or raise.

    Guarantees for a returned path `p`:

    * `p` is ASCII, starts with `/`, is a valid RFC 3986 `path-absolute` (or `/`), has no `//`,
      no `.` or `..` segment, no `;`, no control character, and no `%2F`, `%5C`, `%3B`, `%00`-
      `%1F`, `%7F` or `%25XX` (XX hex); escapes use upper-case hex and never encode an unreserved
      character;
    * decoding `p` once or twice, reading `\\` as `/`, or NFKC-folding it does not introduce a
      new segment boundary or dot segment;
    * `normalize_path(p) == p` (idempotent), and a canonical input is returned as the same object.

    Raises `PathRejected` (reason in `REJECT_REASONS`) for a path that is not absolute, contains
    an encoded slash or backslash, a raw backslash, a control character or raw space (raw or
    encoded), a `;` (raw or `%3B`), double encoding, a malformed or non-UTF-8 escape, raw non-ASCII,
    a dangerous compatibility character, or a `..` that would climb above the root.
    """
    if _CANONICAL.fullmatch(raw) is not None:
        return raw
    return _normalize_slow(raw)


def _normalize_slow(raw: str) -> str:
    """`normalize_path` without the fast path; the reference the fast path must agree with."""
    if not raw.startswith("/"):
        # SECURITY: a relative or absolute-form target has no single meaning as a policy object.
        raise PathRejected("not-absolute")
    out: list[str] = []
    append = out.append
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == "%":
            if i + 3 > n:
                raise PathRejected("bad-percent-encoding", "truncated escape")
            h1 = raw[i + 1]
            h2 = raw[i + 2]
            # Membership in _HEX, not int(): int() also accepts non-ASCII digits.
            if h1 not in _HEX or h2 not in _HEX:
                raise PathRejected("bad-percent-encoding", "malformed escape")
            byte = int(h1 + h2, 16)
            ch = chr(byte)
            if ch in _UNRESERVED:
                append(ch)
            elif byte == 0x2F:
                # SECURITY: %2F would be a segment boundary to a decoding upstream but not to us.
                raise PathRejected("encoded-slash")
            elif byte == 0x5C:
                # SECURITY: Windows/IIS-style upstreams treat a decoded backslash as a separator.
                raise PathRejected("backslash", "encoded backslash")
            elif byte < 0x20 or byte == 0x7F:
                # SECURITY: decoded NUL/CR/LF truncate or split paths in C and log consumers.
                raise PathRejected("control-character", "encoded control character")
            elif byte == 0x3B:
                # SECURITY: a lenient upstream decodes %3B and then strips `;params`.
                raise PathRejected("path-parameter", "encoded semicolon")
            else:
                append("%" + (h1 + h2).upper())
            i += 3
            continue
        if c in _RAW_OK:
            append(c)
        elif c == "\\":
            # SECURITY: upstreams differ on whether `\` separates segments.
            raise PathRejected("backslash")
        elif c == ";":
            # SECURITY: Java/Tomcat-style upstreams strip `;params` from segments (`/admin;x`).
            raise PathRejected("path-parameter")
        elif c <= " " or c == "\x7f":
            # SECURITY: raw controls and space mean the request line was parsed leniently.
            raise PathRejected("control-character")
        elif not c.isascii():
            # SECURITY: raw non-ASCII has no agreed byte form; see the module docstring.
            raise PathRejected("non-ascii")
        else:
            # `"<>`{}|^[]#?`: not allowed raw in a path; encode to the one canonical spelling.
            append(f"%{ord(c):02X}")
        i += 1
    path = "".join(out)
    if _DOUBLE_ENCODED.search(path) is not None:
        # SECURITY: a double-decoding upstream would turn %252F into `/` after our decision.
        raise PathRejected("double-encoding")
    segments = path.split("/")[1:]
    if "%" in path:
        for segment in segments:
            if _HIGH_ESCAPE.search(segment) is not None:
                _check_encoded_text(segment)
    resolved: list[str] = []
    for segment in segments:
        if segment == "..":
            if not resolved:
                # SECURITY: servers disagree on clamping `/..`; refusing removes the ambiguity.
                raise PathRejected("dot-segment-escape")
            resolved.pop()
        elif segment and segment != ".":
            resolved.append(segment)
    if not resolved:
        return "/"
    trailing = segments[-1] in ("", ".", "..")
    return "/" + "/".join(resolved) + ("/" if trailing else "")


def _check_encoded_text(segment: str) -> None:
    """Raise unless the segment's escapes decode to UTF-8 that folds to no delimiter."""
    try:
        text = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        # SECURITY: overlong forms (%C0%AE, %C0%AF) decode to `.` or `/` in lenient decoders.
        raise PathRejected("bad-percent-encoding", "escapes are not UTF-8") from None
    for ch in text:
        if ch.isascii():
            continue
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise PathRejected("control-character", "encoded control character")
        folded = unicodedata.normalize("NFKC", ch)
        if any(f in _FOLD_DELIMITERS or f < " " or "\x7f" <= f <= "\x9f" for f in folded):
            # SECURITY: NFKC-normalizing upstreams read U+FF0F as `/` and U+FF3C as `\`.
            raise PathRejected("non-ascii", "character folds to a delimiter")
    if unicodedata.normalize("NFKC", text) in (".", ".."):
        # SECURITY: `%EF%BC%8E%EF%BC%8E` (fullwidth `..`) is a dot segment after NFKC.
        raise PathRejected("non-ascii", "segment folds to a dot segment")


class PathPattern:
    """A compiled public-path pattern; calling it with a normalized path says if it matches.

    Pattern language (literal except for `*`):

    * `*` as the last character matches any rest, including `/` and the empty string:
      `/public/*` matches `/public/` and `/public/a/b`, not `/public` or `/publicity`;
    * a whole segment `*` elsewhere matches exactly one non-empty segment: `/api/*/health`;
    * every other character, including `.`, `+`, `(`, `[` and other `*`, is literal.

    The pattern is canonicalized with `normalize_path` first, so `/%7Euser/*` and `/~user/*`
    are the same pattern and match what the normalizer produces.
    """

    __slots__ = ("_literal", "_regex", "_star", "pattern")

    def __init__(self, pattern: str) -> None:
        """Compile `pattern`; raise `ValueError` if it is not an acceptable absolute path."""
        try:
            canonical = normalize_path(pattern)
        except PathRejected as exc:
            raise ValueError(f"invalid path pattern {pattern!r}: {exc.reason}") from None
        self.pattern: str = canonical
        self._star = canonical.endswith("*")
        body = canonical[:-1] if self._star else canonical
        parts = body.split("/")
        self._literal = body
        self._regex: re.Pattern[str] | None = None
        # The last part is the literal prefix of the final segment (`/a/**` ends in a literal
        # `*`); only whole `*` segments before it are wildcards.
        if "*" in parts[:-1]:
            last = len(parts) - 1
            regex = "/".join(
                "[^/]+" if part == "*" and i < last else re.escape(part)
                for i, part in enumerate(parts)
            )
            self._regex = re.compile(regex + (".*" if self._star else ""), re.DOTALL)

    def __call__(self, path: str) -> bool:
        """True if the normalized `path` matches; False for any path not in canonical form."""
        try:
            canonical = normalize_path(path) == path
        except PathRejected:
            canonical = False
        if not canonical:
            # SECURITY: a raw `/public/../admin` must never be taken as public; fail closed.
            return False
        if self._regex is not None:
            return self._regex.fullmatch(path) is not None
        if self._star:
            return path.startswith(self._literal)
        return path == self._literal

    def __repr__(self) -> str:
        return f"PathPattern({self.pattern!r})"


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> PathPattern:
    """Return the (cached) compiled form of `pattern`; `ValueError` if the pattern is invalid."""
    return PathPattern(pattern)


def path_matches(pattern: str, path: str) -> bool:
    """True if the normalized `path` matches `pattern` (see `PathPattern`), using a cache."""
    return compile_pattern(pattern)(path)
