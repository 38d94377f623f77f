"""Runtime settings of the gateway process (command line and environment), not the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmbudget_gateway.contract import DEFAULT_SHARED_NAMESPACE


@dataclass(frozen=True)
class Settings:
    config_path: Path
    state_dir: Path = Path(".llmbudget")
    ledger_path: Path | None = None  # default: <state_dir>/ledger.sqlite3
    shared_namespace: str = DEFAULT_SHARED_NAMESPACE
    admin_token: str | None = None  # admin API disabled without one
    max_body_bytes: int = 4 * 1024 * 1024
    default_max_tokens: int = 4096  # reserved when a request sets no max_tokens
    reload_interval: float = 2.0
    retention_days: int = 90
    prune_interval: float = 3600.0
    ledger_flush_interval: float = 0.05
    upstream_override: str | None = None  # send every backend here (the built-in fake upstream)
    mint_standalone_keys: bool = True  # standalone mode: mint keys TokenBudgets ask for

    @property
    def ledger_file(self) -> Path:
        return self.ledger_path or self.state_dir / "ledger.sqlite3"
