"""Operator settings, from the environment (the Deployment sets them; the CLI can too)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from llmbudget_gateway.contract import DEFAULT_SHARED_NAMESPACE


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class OperatorSettings:
    gateway_namespace: str = DEFAULT_SHARED_NAMESPACE
    config_secret: str = "llmbudget-gateway-config"  # noqa: S105 - a name, not a secret
    # What minted key Secrets put in OPENAI_BASE_URL: the gateway Service, as pods reach it.
    gateway_public_url: str = "http://llmbudget-gateway.llmbudget-system.svc:8080/v1"
    # Where the operator reads usage (the gateway admin API) and the token for it.
    gateway_admin_url: str = "http://llmbudget-gateway.llmbudget-system.svc:8080"
    admin_token: str = field(default="", repr=False)
    sync_interval: float = 10.0
    debounce: float = 0.2
    namespaces: tuple[str, ...] = ()  # empty: all namespaces

    @classmethod
    def from_env(cls) -> OperatorSettings:
        namespace = _env("LLMBUDGET_GATEWAY_NAMESPACE", DEFAULT_SHARED_NAMESPACE)
        token = os.environ.get("LLMBUDGET_ADMIN_TOKEN", "")
        token_file = os.environ.get("LLMBUDGET_ADMIN_TOKEN_FILE")
        if token_file:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        watched = os.environ.get("LLMBUDGET_WATCH_NAMESPACES", "")
        return cls(
            gateway_namespace=namespace,
            config_secret=_env("LLMBUDGET_CONFIG_SECRET", "llmbudget-gateway-config"),
            gateway_public_url=_env(
                "LLMBUDGET_GATEWAY_PUBLIC_URL",
                f"http://llmbudget-gateway.{namespace}.svc:8080/v1",
            ),
            gateway_admin_url=_env(
                "LLMBUDGET_GATEWAY_ADMIN_URL", f"http://llmbudget-gateway.{namespace}.svc:8080"
            ),
            admin_token=token,
            sync_interval=float(_env("LLMBUDGET_SYNC_INTERVAL", "10")),
            namespaces=tuple(n.strip() for n in watched.split(",") if n.strip()),
        )
