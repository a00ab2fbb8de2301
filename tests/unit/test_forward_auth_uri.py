"""Which URI a forward-auth question is about (`original_uri`): one answer, or a refusal.

nginx sets `X-Original-URI`, Caddy and Traefik set `X-Forwarded-Uri`, and each passes a
client's copy of the other header along, so the gateway must never prefer one of the two.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.web.forward_auth import original_uri


def asked(*headers: tuple[str, str]) -> str | None:
    request = make_mocked_request("GET", "/.gateway/verify", headers=CIMultiDict(headers))
    return original_uri(request)


def test_either_header_names_the_uri() -> None:
    assert asked(("X-Original-URI", "/a?b=1")) == "/a?b=1"
    assert asked(("X-Forwarded-Uri", "/a?b=1")) == "/a?b=1"
    assert asked() is None


def test_both_headers_may_name_the_same_uri() -> None:
    assert asked(("X-Original-URI", "/private"), ("X-Forwarded-Uri", "/private")) == "/private"


@pytest.mark.parametrize(
    "headers",
    [
        # Caddy or Traefik set X-Forwarded-Uri; the client added X-Original-URI.
        (("X-Forwarded-Uri", "/private"), ("X-Original-URI", "/public/x")),
        # nginx set X-Original-URI; the client added X-Forwarded-Uri.
        (("X-Original-URI", "/private"), ("X-Forwarded-Uri", "/public/x")),
        (("X-Original-URI", "/private"), ("X-Original-URI", "/public/x")),
        (("X-Forwarded-Uri", "/private"), ("X-Forwarded-Uri", "/private")),
    ],
    ids=["client-original", "client-forwarded", "two-original", "two-forwarded"],
)
def test_disagreeing_or_repeated_uri_headers_are_refused(
    headers: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(ValueError, match=r"more than one|disagree"):
        asked(*headers)
