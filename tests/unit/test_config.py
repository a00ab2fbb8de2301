"""Configuration loading: layers, precedence, validation and secret hygiene."""

from __future__ import annotations

import json
from ipaddress import ip_network
from pathlib import Path

import pytest

from gateway.config import (
    ConfigError,
    GatewayConfig,
    HeadersConfig,
    Problem,
    RateLimitRule,
    check_config_file,
    config_summary,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "gateway.example.yaml"
PASSWORD = "hunter2-s3cr3t"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path | None = None, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {})
    return list(caught.value.problems)


def keys_of(problems: list[Problem]) -> set[str]:
    return {p.key for p in problems}


def test_defaults_with_no_file() -> None:
    config = load_config(env={})
    assert config == GatewayConfig()
    assert config.listen == "127.0.0.1:8080"
    assert config.state_dir == Path(".gateway")
    assert config.upstreams == ()
    assert config.cookie.idle_timeout == 1800
    assert config.metrics.listen == "127.0.0.1:9464"
    assert config.public_origin is None


def test_gateway_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 3\n")
    assert load_config(env={"GATEWAY_CONFIG": str(path)}).workers == 3


def test_env_beats_file_and_overrides_beat_env(tmp_path: Path) -> None:
    path = write(tmp_path, "listen: 127.0.0.1:7000\nworkers: 2\ncookie: {secure: true}\n")
    env = {"GATEWAY_LISTEN": "127.0.0.1:7001", "GATEWAY_COOKIE__SECURE": "false"}
    config = load_config(path, env=env)
    assert (config.listen, config.workers, config.cookie.secure) == ("127.0.0.1:7001", 2, False)
    config = load_config(path, env=env, overrides={"listen": "[::1]:0", "state_dir": "/tmp/s"})
    assert config.listen == "[::1]:0"
    assert config.state_dir == Path("/tmp/s")
    assert config.listen_address == ("::1", 0)


def test_mapping_overrides_merge_into_file_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "cookie: {idle_timeout: 600, lifetime: 900}\n")
    config = load_config(path, env={}, overrides={"cookie": {"secure": False}})
    assert (config.cookie.secure, config.cookie.idle_timeout, config.cookie.lifetime) == (
        False,
        600,
        900,
    )
    config = load_config(path, env={"GATEWAY_COOKIE": "{secure: false}"}, overrides={})
    assert (config.cookie.secure, config.cookie.lifetime) == (False, 900)
    assert load_config(path, env={}, overrides={"cookie.lifetime": 1000}).cookie.lifetime == 1000


def test_env_values_are_yaml_typed() -> None:
    env = {"GATEWAY_TRUSTED_PROXIES": "[10.0.0.0/8, 127.0.0.1]", "GATEWAY_AUTO_MIGRATE": "true"}
    config = load_config(env=env)
    assert config.trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"))
    assert config.auto_migrate is True


def test_env_indexes_existing_and_next_list_items(tmp_path: Path) -> None:
    path = write(tmp_path, "upstreams:\n  - {name: app, url: 'http://127.0.0.1:8000'}\n")
    env = {
        "GATEWAY_UPSTREAMS__0__URL": "http://app:9000",
        "GATEWAY_UPSTREAMS__1__NAME": "api",
        "GATEWAY_UPSTREAMS__1__URL": "http://api:9000",
        "GATEWAY_UPSTREAMS__1__MATCH__PATH_PREFIX": "/api",
    }
    config = load_config(path, env=env)
    assert [(u.name, u.url) for u in config.upstreams] == [
        ("app", "http://app:9000"),
        ("api", "http://api:9000"),
    ]
    assert config.upstreams[1].match.path_prefix == "/api"


def test_env_index_past_the_end_is_a_problem() -> None:
    problems = problems_of(env={"GATEWAY_UPSTREAMS__1__URL": "http://x"})
    assert [p.key for p in problems] == ["upstreams[1].url"]
    assert problems[0].origin == "GATEWAY_UPSTREAMS__1__URL"


def test_env_typo_is_a_problem_naming_the_variable() -> None:
    problems = problems_of(env={"GATEWAY_COOKIE__IDLE_TIMOUT": "60"})
    assert keys_of(problems) == {"cookie.idle_timout"}
    assert "idle_timeout" in problems[0].expected
    assert "GATEWAY_COOKIE__IDLE_TIMOUT" in str(problems[0])


def test_reserved_and_foreign_env_are_ignored() -> None:
    env = {
        "GATEWAY_CONFIG": "",
        "GATEWAY_TEST_DATABASE_URL": "postgresql://x",
        "GATEWAY_TEST_ANYTHING": "1",
        "HOME": "/root",
    }
    assert load_config(env=env) == GatewayConfig()


def test_yaml_syntax_error_is_one_problem_with_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"listen: 127.0.0.1:8080\ndatabase_url: postgresql://u:{PASSWORD}@h\n"
        "cookie: {secure: true\nworkers: 2\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert len(caught.value.problems) == 1
    assert "line 4" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert caught.value.source == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("- a\n- b\n", "mapping"), ("listen: a\nlisten: b\n", "YAML")],
)
def test_non_mapping_or_duplicate_key_file_is_one_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 1
    assert expected in str(problems[0])


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "absent.yaml")
    assert len(problems) == 1
    assert "readable" in problems[0].expected


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing\n"), env={}) == GatewayConfig()


def test_four_independent_mistakes_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
workers: 0
trusted_proxies: [10.0.0.1/8]
cookie: {idle_timeout: 7200, lifetime: 3600}
upstreams:
  - {name: app, url: "http://127.0.0.1:8000", timeouts: {read: 0}}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert keys_of(list(caught.value.problems)) == {
        "workers",
        "trusted_proxies[0]",
        "cookie.idle_timeout",
        "upstreams[0].timeouts.read",
    }
    message = str(caught.value)
    assert message.splitlines()[0] == f"invalid configuration (4 problems) in {path}"
    assert len(message.splitlines()) == 5
    assert "cookie.lifetime" in message


def test_check_config_file_lists_problems(tmp_path: Path) -> None:
    assert check_config_file(EXAMPLE, env={}) == []
    problems = check_config_file(write(tmp_path, "workers: 65\n"), env={})
    assert [p.key for p in problems] == ["workers"]


@pytest.mark.parametrize("origin", ["file", "env"])
def test_secrets_never_appear_in_errors(tmp_path: Path, origin: str) -> None:
    url = f"mysql://admin:{PASSWORD}@db/gateway"
    if origin == "file":
        path: Path | None = write(
            tmp_path, f"database_url: '{url}'\nredis_url: 'http://{PASSWORD}'\n"
        )
        env = {}
    else:
        path, env = None, {"GATEWAY_DATABASE_URL": url, "GATEWAY_REDIS_URL": f"x{PASSWORD}"}
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert keys_of(list(caught.value.problems)) == {"database_url", "redis_url"}
    assert {p.value for p in caught.value.problems} == {"<redacted>"}
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value.problems)


def test_credentials_in_other_urls_are_masked() -> None:
    problems = problems_of(env={"GATEWAY_PUBLIC_URL": f"ftp://me:{PASSWORD}@example.com"})
    assert PASSWORD not in str(problems[0])


def test_config_summary_redacts_secrets_and_is_json() -> None:
    url = f"postgresql://gw:{PASSWORD}@db/gw"
    config = load_config(env={"GATEWAY_DATABASE_URL": url, "GATEWAY_TRUSTED_PROXIES": "::1"})
    summary = config_summary(config)
    text = json.dumps(summary)
    assert PASSWORD not in text
    assert summary["database_url"] == "<redacted>"
    assert summary["redis_url"] is None
    assert summary["trusted_proxies"] == ["::1/128"]
    assert config.database_url is not None
    assert config.database_url.get_secret_value() == url


def test_example_file_loads() -> None:
    config = load_config(EXAMPLE, env={})
    assert [u.name for u in config.upstreams] == ["app", "reports"]
    assert config.upstreams[0].public_paths == ("/public/*", "/healthz")
    assert config.upstreams[1].match.host == "reports.example.com"
    assert set(config.rate_limits.plans) == {"pro"}
    assert config == load_config(EXAMPLE, env={}, overrides={})


def test_example_file_lists_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for name in GatewayConfig.model_fields:
        assert f"\n{name}:" in text


def test_mfa_step_up_defaults_to_15_minutes_and_0_turns_it_off(tmp_path: Path) -> None:
    assert load_config(env={}).mfa.step_up_seconds == 900
    assert load_config(env={"GATEWAY_MFA__STEP_UP_SECONDS": "0"}).mfa.step_up_seconds == 0
    path = write(tmp_path, "mfa: {step_up_seconds: 60}\n")
    assert load_config(path, env={}).mfa.step_up_seconds == 60


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "≥ 0"),
        ("86401", "≤ 86400"),
        ("true", "an integer"),
        ("'15m'", "an integer"),
        ("1.5", "an integer"),
        ("null", "an integer"),
    ],
)
def test_bad_mfa_step_up_seconds_is_one_clear_problem(
    tmp_path: Path, value: str, expected: str
) -> None:
    problems = problems_of(write(tmp_path, f"mfa: {{step_up_seconds: {value}}}\n"))
    assert [p.key for p in problems] == ["mfa.step_up_seconds"]
    assert expected in problems[0].expected
    assert len(str(problems[0]).splitlines()) == 1
    problems = problems_of(write(tmp_path, "mfa: {step_up: 60}\n"))
    assert [p.key for p in problems] == ["mfa.step_up"]
    assert "step_up_seconds" in problems[0].expected


@pytest.mark.parametrize(
    ("rate", "per_second"), [("10/s", 10.0), ("120/m", 2.0), ("1800/h", 0.5), ("0.5/s", 0.5)]
)
def test_rate_parsing(rate: str, per_second: float) -> None:
    rule = RateLimitRule(name="r", key=("ip",), rate=rate, burst=1)
    assert rule.per_second == pytest.approx(per_second)


@pytest.mark.parametrize("rate", ["0/s", "-1/s", "10", "ten/s", "10/d", "/s", ""])
def test_bad_rates_are_rejected(rate: str) -> None:
    env = {
        "GATEWAY_RATE_LIMITS__RULES": f"[{{name: r, key: [ip], rate: '{rate}', burst: 1}}]",
    }
    assert keys_of(problems_of(env=env)) == {"rate_limits.rules[0].rate"}


def test_rule_methods_upper_cased_and_keys_unique() -> None:
    rule = RateLimitRule.model_validate(
        {"name": "r", "match": {"methods": ["post"]}, "key": ["ip"], "rate": "1/s", "burst": 1}
    )
    assert rule.match.methods == ("POST",)
    env = {"GATEWAY_RATE_LIMITS__RULES": "[{name: r, key: [ip, ip], rate: 1/s, burst: 1}]"}
    assert keys_of(problems_of(env=env)) == {"rate_limits.rules[0].key"}


def test_rule_names_unique_and_plan_names_valid(tmp_path: Path) -> None:
    rule = "{name: r, key: [ip], rate: 1/s, burst: 1}"
    path = write(tmp_path, f"rate_limits: {{rules: [{rule}, {rule}], plans: {{Pro: []}}}}\n")
    assert keys_of(problems_of(path)) == {"rate_limits.rules[1].name", "rate_limits.plans.Pro"}


def test_header_presets() -> None:
    default = HeadersConfig().resolved_names()
    assert default["user_id"] == "X-User-Id"
    assert default["assertion"] == "X-Gateway-Assertion"
    assert "preferred_username" not in default
    proxy = HeadersConfig(preset="oauth2-proxy", names={"user_roles": "X-Roles"}).resolved_names()
    assert proxy["user_id"] == "X-Forwarded-User"
    assert proxy["user_email"] == "X-Forwarded-Email"
    assert proxy["preferred_username"] == "X-Forwarded-Preferred-Username"
    assert proxy["tenant_id"] == "X-Tenant-Id"
    assert proxy["user_roles"] == "X-Roles"


@pytest.mark.parametrize(
    ("names", "key"),
    [
        ({"nickname": "X-Nick"}, "headers.names.nickname"),
        ({"user_id": "Cookie"}, "headers.names.user_id"),
        ({"user_id": "X User"}, "headers.names.user_id"),
        ({"user_id": "x-tenant-id"}, "headers.names.user_id"),
    ],
)
def test_bad_header_names_are_problems(tmp_path: Path, names: dict[str, str], key: str) -> None:
    path = write(tmp_path, f"headers: {{names: {json.dumps(names)}}}\n")
    assert keys_of(problems_of(path)) == {key}


def test_trusted_proxy_with_host_bits_is_a_problem() -> None:
    problems = problems_of(env={"GATEWAY_TRUSTED_PROXIES": "[10.0.0.0/8, 10.0.0.1/8]"})
    assert [p.key for p in problems] == ["trusted_proxies[1]"]
    assert "host bits" in problems[0].expected
    assert "10.0.0.0/8" in problems[0].expected


def test_unknown_key_is_a_problem_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "cookie: {secure: true, lifetme: 100}\nlisen: x\n")
    problems = problems_of(path)
    assert keys_of(problems) == {"cookie.lifetme", "lisen"}
    assert all(p.value == "an unknown key" for p in problems)
    assert "lifetime" in next(p for p in problems if p.key == "cookie.lifetme").expected


def test_duplicate_upstream_names_and_listener_clash(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
listen: 0.0.0.0:9000
metrics: {listen: 127.0.0.1:9000}
upstreams:
  - {name: app, url: "http://a"}
  - {name: app, url: "http://b", match: {path_prefix: /b}}
""",
    )
    assert keys_of(problems_of(path)) == {"upstreams[1].name", "metrics.listen"}
    ok = load_config(env={"GATEWAY_LISTEN": "127.0.0.1:0", "GATEWAY_METRICS__LISTEN": "[::1]:0"})
    assert ok.metrics.listen == "[::1]:0"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LISTEN", "localhost"),
        ("LISTEN", "127.0.0.1:65536"),
        ("LISTEN", "::1:8080"),
        ("PUBLIC_URL", "https://example.com/?q=1"),
        ("PUBLIC_URL", "example.com"),
        ("WORKERS", "65"),
        ("STATE_DIR", "[1, 2]"),
        ("LOGGING__LEVEL", "verbose"),
        ("LIMITS__MAX_HEADER_BYTES", "512"),
        ("TENANCY__SUBDOMAIN_OF", "https://example.com"),
        ("COOKIE__NAME", "bad name"),
        ("UPSTREAMS", "[{name: App, url: 'http://a'}]"),
        ("UPSTREAMS", "[{name: app, url: 'ftp://a'}]"),
        ("UPSTREAMS", "[{name: app, url: 'http://a', public_paths: ['/a*b']}]"),
        ("UPSTREAMS", "[{name: app, url: 'http://a', match: {path_prefix: api}}]"),
    ],
)
def test_bad_values_are_single_problems(key: str, value: str) -> None:
    problems = problems_of(env={f"GATEWAY_{key}": value})
    assert len(problems) == 1, problems
    assert problems[0].origin == f"GATEWAY_{key}"


def test_public_origin_and_host_normalisation() -> None:
    env = {
        "GATEWAY_PUBLIC_URL": "HTTPS://App.Example.com:443/base",
        "GATEWAY_UPSTREAMS": "[{name: a, url: 'http://a', match: {host: '*.Example.COM'}}]",
    }
    config = load_config(env=env)
    assert config.public_origin == "https://app.example.com"
    assert config.upstreams[0].match.host == "*.example.com"
    assert load_config(env={"GATEWAY_PUBLIC_URL": "http://h:8080"}).public_origin == "http://h:8080"


def test_problem_and_error_formatting() -> None:
    problem = Problem("cookie.idle_timeout", "5", "an integer ≥ 60")
    assert str(problem) == "cookie.idle_timeout: got 5; expected an integer ≥ 60"
    error = ConfigError([problem], "environment")
    assert str(error).splitlines() == [
        "invalid configuration (1 problem) in environment",
        "  cookie.idle_timeout: got 5; expected an integer ≥ 60",
    ]
