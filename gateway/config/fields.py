"""Parsers for the scalar formats the configuration uses; each raises ValueError whose message
reads as the "expected ..." half of a problem and never contains the offending value."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
_RATE_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
HOST_PORT_HELP = "HOST:PORT with a port in 0..65535 (IPv6 as [::1]:8080)"


def problem(sub: str, shown: str, expected: str) -> PydanticCustomError:
    """An error for a cross-field check: `sub` is appended to the validator's location
    (".idle_timeout", "[2].name"), `shown` is the printable value."""
    ctx = {"sub": sub, "shown": shown, "expected": expected}
    return PydanticCustomError("config_problem", "{expected}", ctx)


def is_hostname(text: str) -> bool:
    """True for a lower-case DNS name of valid labels (no port, no wildcard)."""
    return len(text) <= 253 and bool(_HOSTNAME.match(text))


def is_token(text: str) -> bool:
    """True for an RFC 9110 token (header names, method names)."""
    return bool(_TOKEN.match(text))


def split_host_port(text: str) -> tuple[str, int]:
    """Split "HOST:PORT" / "[v6]:PORT" into (host, port); the host is an IP or hostname."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(HOST_PORT_HELP)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ip(host, version=6):
            raise ValueError(HOST_PORT_HELP)
    elif not (_is_ip(host, version=4) or is_hostname(host.lower())):
        raise ValueError(HOST_PORT_HELP)
    return host, int(port_text)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def check_host_port(text: str) -> str:
    """Validate a HOST:PORT listen address and return it unchanged."""
    split_host_port(text)
    return text


def check_http_url(text: str, *, allow_path: bool = True) -> SplitResult:
    """Parse an absolute http(s) URL with a host, no credentials, query or fragment."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an absolute http:// or https:// URL with a host")
    # SECURITY: credentials in a URL leak through logs, errors and Referer headers.
    if parts.username is not None or parts.password is not None:
        raise ValueError("a URL without user:password@ credentials")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("a URL without ?query or #fragment")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("a URL with a port in 1..65535") from None
    if not allow_path and parts.path not in ("", "/"):
        raise ValueError("a URL without a path")
    return parts


def origin_of(parts: SplitResult) -> str:
    """scheme://host[:port], lower-cased, the default port omitted."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    port = parts.port
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def parse_network(value: Any) -> Any:
    """Turn "10.0.0.0/8" or a bare IP into a network; a CIDR with host bits set is refused."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError("an IP address or CIDR network string such as 10.0.0.0/8")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError("an IP address or CIDR network such as 10.0.0.0/8") from None
    # SECURITY: silently widening 10.0.0.1/8 would trust a whole network by accident.
    raise ValueError(f"a CIDR without host bits set (did you mean {loose}?)")


def parse_rate(text: str) -> float:
    """Events per second for "N/s", "N/m" or "N/h"; N must be positive."""
    found = _RATE.match(text)
    if not found or float(found.group(1)) <= 0:
        raise ValueError('a positive rate such as "10/s", "100/m" or "1000/h"')
    return float(found.group(1)) / _RATE_UNIT_SECONDS[found.group(2)]


def check_path_pattern(text: str) -> str:
    """A path pattern starting with "/", "*" only as the last character or a whole segment."""
    if not text.startswith("/") or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError('a path pattern starting with "/" and without spaces')
    for index, segment in enumerate(text.split("/")):
        if "*" not in segment or segment == "*":
            continue
        is_last = index == text.count("/")
        if not (is_last and segment.endswith("*") and segment.count("*") == 1):
            raise ValueError('"*" only as the last character or as a whole path segment')
    return text


def first_duplicate(names: list[str]) -> tuple[int, int] | None:
    """(first index, repeat index) of the first repeated name, or None."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            return seen[name], index
        seen[name] = index
    return None


class ConfigModel(BaseModel):
    """Base of every configuration section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
