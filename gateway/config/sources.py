"""Raw configuration layers: the YAML file, GATEWAY_* variables and command-line overrides.

Each layer is merged into one plain dict before validation; every value placed by the
environment or the command line is remembered with its origin so problems can name it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gateway.config.errors import ConfigError, Problem, is_secret_key

ENV_PREFIX = "GATEWAY_"
RESERVED_ENV = frozenset({"GATEWAY_CONFIG"})
RESERVED_ENV_PREFIXES = ("GATEWAY_TEST_",)
FILE_KEY = "(file)"
Origins = dict[str, str]


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping ({} for an empty file); ConfigError with one problem
    for a missing/unreadable file, a syntax error (with line and column) or a non-mapping."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise _file_error(source, f"{source!r} ({reason})", "a readable YAML file") from None
    try:
        # SECURITY: a safe loader only; a config file must not construct Python objects.
        data = yaml.load(text, Loader=_UniqueKeySafeLoader)  # noqa: S506
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # Only the parser's description, never the source snippet: it may hold a secret.
        shown = f"a YAML error{where} ({exc.problem or exc.context})"
        raise _file_error(source, shown, "valid YAML") from None
    except yaml.YAMLError:
        raise _file_error(source, "unparseable YAML", "valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        shown = f"a YAML {type(data).__name__}"
        raise _file_error(source, shown, "a mapping of configuration keys at the top level")
    return data


def _file_error(source: str, shown: str, expected: str) -> ConfigError:
    return ConfigError([Problem(FILE_KEY, shown, expected)], source)


def dotted(path: Sequence[str | int]) -> str:
    """("upstreams", 0, "url") -> "upstreams[0].url"."""
    out = ""
    for part in path:
        is_index = isinstance(part, int) or (isinstance(part, str) and part.isdigit())
        out += f"[{part}]" if is_index else (f".{part}" if out else str(part))
    return out


def apply_env(data: dict[str, Any], env: Mapping[str, str], origins: Origins) -> list[Problem]:
    """Merge GATEWAY_<SECTION>__<KEY> variables into `data` (lower-cased keys, numeric
    segments index lists). Reserved names are skipped; unplaceable ones become problems."""
    problems: list[Problem] = []
    names = [n for n in env if n.startswith(ENV_PREFIX) and not _reserved(n)]
    for name in sorted(names, key=_env_sort_key):
        path = name[len(ENV_PREFIX) :].lower().split("__")
        key = dotted(path)
        if not all(path):
            expected = "GATEWAY_<SECTION>__<KEY> with non-empty parts"
            problems.append(Problem(key or name, "an empty key part", expected, name))
            continue
        error = assign(data, path, _env_value(env[name], key))
        if error:
            problems.append(Problem(key, "a key that cannot be placed", error, name))
        else:
            origins[key] = name
    return problems


def _reserved(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


def _env_sort_key(name: str) -> list[tuple[int, int, str]]:
    """Order so list index 2 is placed after 1 (and 10 after 9), parents before children."""
    parts = name[len(ENV_PREFIX) :].lower().split("__")
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _env_value(raw: str, key: str) -> object:
    """YAML-typed value (`true`, `30`, `[a, b]`), or the raw text if it is not YAML."""
    # SECURITY: secrets are taken verbatim; YAML must not reinterpret or truncate them.
    if is_secret_key(key):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(
    data: dict[str, Any], overrides: Mapping[str, object], origins: Origins
) -> list[Problem]:
    """Merge dotted-key overrides ("listen", "upstreams[0].url") into `data`."""
    problems: list[Problem] = []
    for raw_key, value in overrides.items():
        path = [p for p in re.split(r"[.\[\]]+", raw_key) if p]
        key = dotted(path)
        error = assign(data, path, value) if path else "a non-empty key"
        if error:
            problems.append(Problem(key or repr(raw_key), "an override", error, "command line"))
        else:
            origins[key] = "command line"
    return problems


def assign(root: dict[str, Any], path: Sequence[str], value: object) -> str | None:
    """Set `value` at `path`, creating mappings/lists on the way; a numeric part indexes a
    list and may only name an existing item or the next one. A mapping value is merged
    into an existing mapping (other keys kept); a list replaces. Returns an error or None."""
    node: Any = root
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        fresh: object = value if last else ([] if path[depth + 1].isdigit() else {})
        if isinstance(node, dict):
            slot: str | int = part
            if last and isinstance(value, Mapping) and isinstance(node.get(part), dict):
                _merge(node[part], value)
            elif last or node.get(part) is None:
                node[part] = fresh
        elif isinstance(node, list) and part.isdigit():
            slot = int(part)
            if slot > len(node):
                return f"an index in 0..{len(node)} (an existing item or the next one)"
            if slot == len(node):
                node.append(fresh)
            elif last:
                node[slot] = value
        else:
            return f"a key under a mapping, but {dotted(path[:depth]) or 'the top'} is not one"
        node = node[slot]
    return None


def _merge(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    """Deep-merge `source` into `target`: mappings merge, anything else replaces."""
    for key, value in source.items():
        if isinstance(value, Mapping):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            _merge(target[key], value)
        else:
            target[key] = value
