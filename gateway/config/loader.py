"""Load, validate and summarise the configuration.

Precedence: overrides (command-line flags) > GATEWAY_* environment > YAML file > defaults.
Every problem in every layer is collected before failing, and no secret is ever echoed.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from gateway.config.errors import REDACTED, ConfigError, Problem, is_secret_key, show_value
from gateway.config.schema import GatewayConfig
from gateway.config.sources import Origins, apply_env, apply_overrides, dotted, read_yaml

CONFIG_ENV = "GATEWAY_CONFIG"
_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ", "Input should be ")
_EXPECTED_BY_TYPE = {
    "greater_than": "a number > {gt}",
    "greater_than_equal": "a number ≥ {ge}",
    "less_than": "a number < {lt}",
    "less_than_equal": "a number ≤ {le}",
    "too_short": "at least {min_length} item(s)",
    "too_long": "at most {max_length} item(s)",
    "string_too_short": "a string of at least {min_length} character(s)",
    "string_too_long": "a string of at most {max_length} character(s)",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "dict_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> GatewayConfig:
    """A validated, immutable configuration, or ConfigError listing every problem.

    `path` defaults to $GATEWAY_CONFIG (no file at all if unset); `env` defaults to
    os.environ; `overrides` maps dotted keys to values and wins over everything.
    """
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    source = str(path) if path is not None else "environment"
    data = read_yaml(path) if path is not None else {}
    origins: Origins = {}
    problems = apply_env(data, env, origins)
    problems += apply_overrides(data, overrides or {}, origins)
    config: GatewayConfig | None = None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems += problems_from(exc, origins)
    if problems or config is None:
        raise ConfigError(problems, source)
    return config


def check_config_file(path: Path, env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem with the file as the gateway would load it (empty when valid)."""
    try:
        load_config(path, env)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def problems_from(exc: ValidationError, origins: Origins | None = None) -> list[Problem]:
    """One Problem per pydantic error: dotted key, redacted value, "expected ..." text."""
    return [_problem(error, origins or {}) for error in exc.errors(include_url=False)]


def _problem(error: ErrorDetails, origins: Origins) -> Problem:
    loc = error["loc"]
    key = dotted(loc)
    ctx = error.get("ctx") or {}
    if error["type"] == "config_problem":
        key = (key + str(ctx["sub"])).lstrip(".")
        value = REDACTED if is_secret_key(key) else str(ctx["shown"])
        expected = str(ctx["expected"])
    elif error["type"] == "extra_forbidden":
        value, expected = "an unknown key", _known_keys(loc)
    elif error["type"] == "missing":
        value, expected = "nothing", "a value (this key is required)"
    else:
        value, expected = show_value(key, error["input"]), _reword(error)
    return Problem(key, value, expected, _origin_of(key, origins))


def _reword(error: ErrorDetails) -> str:
    """Pydantic's message as the object of "expected": "Input should be X" -> "X"."""
    template = _EXPECTED_BY_TYPE.get(error["type"])
    if template is not None:
        return template.format(**(error.get("ctx") or {}))
    message = error["msg"]
    for prefix in _MESSAGE_PREFIXES:
        message = message.removeprefix(prefix)
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def _origin_of(key: str, origins: Origins) -> str:
    """The variable or flag that set `key`, one of its parents or one of its children."""
    for set_key, origin in origins.items():
        if _within(key, set_key) or _within(set_key, key):
            return origin
    return ""


def _within(key: str, parent: str) -> bool:
    return key == parent or key.startswith((parent + ".", parent + "["))


def _known_keys(loc: tuple[int | str, ...]) -> str:
    """ "one of: ..." for the section holding the unknown key, with a close match first."""
    model = _model_at(loc[:-1])
    if model is None:
        return "no key here"
    known = list(model.model_fields)
    guess = difflib.get_close_matches(str(loc[-1]).lower(), known, n=1)
    if guess:
        return f"a known key (did you mean {guess[0]!r}?)"
    return f"one of: {', '.join(known)}"


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class found by following `loc` from GatewayConfig through its fields."""
    annotation: Any = GatewayConfig
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field else None
        elif typing.get_origin(annotation) in (tuple, dict):
            annotation = typing.get_args(annotation)[-1 if isinstance(part, str) else 0]
        else:
            return None
    annotation = _unwrap(annotation)
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and `X | None` down to X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def config_summary(config: GatewayConfig) -> dict[str, Any]:
    """The effective configuration as a JSON-safe dict, secrets shown as "<redacted>"."""
    summary = _jsonable(config.model_dump(), "")
    assert isinstance(summary, dict)
    return summary


def _jsonable(value: object, key: str) -> object:
    # SECURITY: the summary is printed and logged; a set secret never leaves as text.
    if isinstance(value, SecretStr) or (is_secret_key(key) and value is not None):
        return REDACTED
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{key}.{k}".lstrip(".")) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
