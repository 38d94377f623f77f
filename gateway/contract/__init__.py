"""The gateway config contract: the only part of the gateway the operator may import.

`GatewayConfig` is the versioned, plain-data config; `render` turns TokenBudget and ModelRoute
specs into it; `load_config` reads it from a rendered file or a manifest directory.
"""

from llmbudget_gateway.contract.config import CONFIG_VERSION, GatewayConfig
from llmbudget_gateway.contract.errors import ConfigError, ConfigIssue
from llmbudget_gateway.contract.loading import CONFIG_FILE_NAME, load_config, parse_config
from llmbudget_gateway.contract.render import (
    DEFAULT_SHARED_NAMESPACE,
    MintedKey,
    ObjectRef,
    Problem,
    Rendered,
    Resource,
    render,
)

__all__ = [
    "CONFIG_FILE_NAME",
    "CONFIG_VERSION",
    "DEFAULT_SHARED_NAMESPACE",
    "ConfigError",
    "ConfigIssue",
    "GatewayConfig",
    "MintedKey",
    "ObjectRef",
    "Problem",
    "Rendered",
    "Resource",
    "load_config",
    "parse_config",
    "render",
]
