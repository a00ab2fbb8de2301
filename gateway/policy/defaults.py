"""Where the policy files are: the configured ones, else those shipped in the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from gateway.config import PolicyConfig


def packaged(name: str) -> Path:
    """A file of the packaged default policy (`model.conf`, `policy.csv`)."""
    return Path(str(resources.files("gateway.policy").joinpath("data", name)))


def policy_paths(config: PolicyConfig) -> tuple[Path, Path]:
    """(model, rules) paths: `policy.model` / `policy.rules` when set, else the defaults."""
    return (config.model or packaged("model.conf"), config.rules or packaged("policy.csv"))
