"""Runtime settings of the gateway process (command line and environment), not the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from llmbudget_gateway.contract import DEFAULT_SHARED_NAMESPACE


@dataclass(frozen=True, repr=False)
class Settings:
    config_path: Path
    state_dir: Path = Path(".llmbudget")
    ledger_path: Path | None = None  # default: <state_dir>/ledger.sqlite3
    ledger_dsn: str | None = None  # PostgreSQL ledger shared by replicas (a secret: never log)
    ledger_fail_open: bool = False  # database down: admit on the local view (else 503)
    reservation_lease_seconds: float = 900.0  # a dead replica's reservations expire after this
    shared_sync_interval: float = 1.0  # seconds between refreshes of the shared spend view
    shared_namespace: str = DEFAULT_SHARED_NAMESPACE
    admin_token: str | None = None  # admin API disabled without one
    max_body_bytes: int = 4 * 1024 * 1024
    default_max_tokens: int = 4096  # reserved when a request sets no max_tokens
    reload_interval: float = 2.0
    retention_days: int = 90
    prune_interval: float = 3600.0
    ledger_flush_interval: float = 0.05
    upstream_override: str | None = None  # send every backend here (the built-in fake upstream)
    # forward a request's `fake` object (the built-in fake provider's script) to providers:
    # on the Anthropic paths only with the fake provider (--fake-upstream, tests), else refused;
    # the OpenAI paths forward a request's fields as the client sent them
    forward_fake_scripts: bool = False
    # /metrics is served on its own listener, never on the API port (teams must not read
    # every namespace's spend); None: no metrics listener
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    mint_standalone_keys: bool = True  # standalone mode: mint keys TokenBudgets ask for
    spike_percent: int = 100  # a day's spend this much above the day before is a spike
    spike_min_micros: int = 1_000_000  # ... when the day's spend reaches this (1 USD)
    spike_interval: float = 60.0  # seconds between checks of today's spend for spikes
    drain_seconds: float = 0.0  # SIGTERM: serve this long with Connection: close (drain.py)

    @property
    def ledger_file(self) -> Path:
        return self.ledger_path or self.state_dir / "ledger.sqlite3"

    @property
    def ledger_description(self) -> str:
        """Where the ledger is, for logs: the PostgreSQL DSN's host and database only."""
        if self.ledger_dsn is None:
            return str(self.ledger_file)
        try:
            info = conninfo_to_dict(self.ledger_dsn)
        except Exception:
            return "postgresql (unparsable DSN)"
        return f"postgresql {info.get('host', '?')}/{info.get('dbname', '?')}"

    def __repr__(self) -> str:  # the DSN (password) and admin token stay out of logs
        return f"Settings(config_path={self.config_path!r}, ledger={self.ledger_description!r})"
