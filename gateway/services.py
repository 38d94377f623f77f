"""Everything a request handler needs, created once in the app lifespan."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from llmbudget_gateway.anomalies import Spike
from llmbudget_gateway.budgets import BudgetBook
from llmbudget_gateway.contract.config import GatewayConfig
from llmbudget_gateway.ledger.postgres import PostgresLedger
from llmbudget_gateway.ledger.sqlite import SqliteLedger
from llmbudget_gateway.ledger.writer import LedgerWriter
from llmbudget_gateway.metrics import Metrics
from llmbudget_gateway.rate_limit import KeyRateLimiter
from llmbudget_gateway.response_cache import ResponseCache
from llmbudget_gateway.runtime import Runtime
from llmbudget_gateway.settings import Settings
from llmbudget_gateway.shared_budgets import SharedBudgets
from llmbudget_gateway.tokens import TokenCounter


@dataclass
class Services:
    settings: Settings
    runtime: Runtime
    book: BudgetBook
    ledger: LedgerWriter
    store: SqliteLedger | PostgresLedger
    metrics: Metrics
    session: aiohttp.ClientSession
    tokens: TokenCounter
    rng: random.Random = field(default_factory=random.Random)
    cache: ResponseCache = field(default_factory=ResponseCache)
    shared: SharedBudgets | None = None  # budgets shared with other replicas (PostgreSQL)
    spikes: list[Spike] = field(default_factory=list)  # today's spend spikes (anomalies.py)
    limiter: KeyRateLimiter = field(default_factory=KeyRateLimiter)
    _process_id: str = field(default_factory=lambda: os.urandom(6).hex())
    _sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def new_request_id(self) -> str:
        """Unique across processes and restarts (random per process); no syscall per call."""
        return f"llmb-{self._process_id}-{next(self._sequence):x}"

    def apply_config(self, config: GatewayConfig, now: datetime) -> None:
        """Swap in a new config. Synchronous: no request sees half of it."""
        runtime = Runtime.build(config)
        self.book.apply(config.budgets, now)
        self.runtime = runtime
        self.limiter.retain({(key.namespace, key.name) for key in config.keys})
        self.metrics.set_revision(runtime.revision)
