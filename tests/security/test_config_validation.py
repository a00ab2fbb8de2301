"""Configuration of the security features is validated before start-up, one line per problem."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config


def problems(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    return str(info.value)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GATEWAY_TLS__CERT_FILE": "/x.pem"}, "tls.key_file"),
        ({"GATEWAY_TLS__KEY_FILE": "/x.key"}, "tls.cert_file"),
        (
            {
                "GATEWAY_UPSTREAMS__0__NAME": "a",
                "GATEWAY_UPSTREAMS__0__URL": "http://127.0.0.1:1",
                "GATEWAY_UPSTREAMS__0__TLS__CA_FILE": "/ca.pem",
            },
            "upstreams[0].tls",
        ),
        (
            {
                "GATEWAY_UPSTREAMS__0__NAME": "a",
                "GATEWAY_UPSTREAMS__0__URL": "https://127.0.0.1:1",
                "GATEWAY_UPSTREAMS__0__TLS__CLIENT_CERT_FILE": "/c.pem",
            },
            "upstreams[0].tls.client_key_file",
        ),
        (
            {
                "GATEWAY_UPSTREAMS__0__NAME": "a",
                "GATEWAY_UPSTREAMS__0__URL": "http://127.0.0.1:1",
                "GATEWAY_UPSTREAMS__0__ALLOWED_CONTENT_TYPES": "[image/png, 'text/html; x', png]",
            },
            "upstreams[0].allowed_content_types",
        ),
        ({"GATEWAY_LIMITS__HEADER_READ_TIMEOUT": "0"}, "limits.header_read_timeout"),
    ],
    ids=["cert-without-key", "key-without-cert", "tls-on-http", "client-cert-alone",
         "bad-media-types", "zero-header-timeout"],
)  # fmt: skip
def test_half_configured_security_features_are_refused(env: dict[str, str], key: str) -> None:
    """A half-configured TLS or mTLS setup silently serving plain HTTP (or skipping the client
    certificate) is the misconfiguration class behind many proxy incidents: refuse to start."""
    assert key in problems(env)
