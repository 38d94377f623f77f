"""Load a GatewayConfig from a rendered config file or from a directory of manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llmbudget_gateway.contract.config import GatewayConfig
from llmbudget_gateway.contract.errors import ConfigError, ConfigIssue, issues_from_validation
from llmbudget_gateway.contract.manifests import render_manifests
from llmbudget_gateway.contract.render import DEFAULT_SHARED_NAMESPACE

CONFIG_FILE_NAME = "config.json"
"""The key of the rendered config in the operator's Secret, hence the file name when mounted."""


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    """Parse a rendered config (JSON, or YAML for hand-written files)."""
    data: Any
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError([ConfigIssue(source, "", f"neither JSON nor YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(source, "", "the config must be a mapping")])
    version = data.get("version")
    if version != 1:
        raise ConfigError(
            [
                ConfigIssue(
                    source,
                    "version",
                    f"unsupported config version {version!r}; this gateway reads 1",
                )
            ]
        )
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(issues_from_validation(error, source)) from None


def load_config(path: Path, shared_namespace: str = DEFAULT_SHARED_NAMESPACE) -> GatewayConfig:
    """A config from `path`, which is one of:

    - a directory holding `config.json` (the operator's Secret mounted as a volume);
    - a directory of TokenBudget/ModelRoute/Secret manifests (standalone mode);
    - a single rendered config file.
    """
    if path.is_dir():
        rendered_file = path / CONFIG_FILE_NAME
        if rendered_file.is_file():
            return load_config(rendered_file)
        return render_manifests(path, shared_namespace).config
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), "", f"cannot read: {exc}")]) from None
    return parse_config(text, str(path))
