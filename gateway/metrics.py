"""Prometheus metrics, on a registry owned by the app (no global state).

Base units and `_total` suffixes. Labels never carry user ids, session ids or keys: only
namespace, budget, model, token type and status. Budget gauges and breaker states are computed
at scrape time from the budget book.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmbudget_gateway.breaker import BreakerState
from llmbudget_gateway.budgets import BudgetBook
from llmbudget_gateway.request_metrics import ModelSeries, RequestCollector

BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class _BudgetCollector(Collector):
    def __init__(self, book: BudgetBook) -> None:
        self._book = book

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = datetime.now(UTC)
        labels = ["namespace", "budget", "period"]
        limit_usd = GaugeMetricFamily(
            "llmbudget_budget_limit_usd", "Dollar limit of a budget period", labels=labels
        )
        spent_usd = GaugeMetricFamily(
            "llmbudget_budget_spent_usd",
            "Dollars spent in the current budget period",
            labels=labels,
        )
        limit_tokens = GaugeMetricFamily(
            "llmbudget_budget_limit_tokens", "Token limit of a budget period", labels=labels
        )
        spent_tokens = GaugeMetricFamily(
            "llmbudget_budget_spent_tokens",
            "Tokens used in the current budget period",
            labels=labels,
        )
        used = GaugeMetricFamily(
            "llmbudget_budget_used_ratio",
            "Share of the budget period's limit used (1 = 100 %)",
            labels=labels,
        )
        breaker = GaugeMetricFamily(
            "llmbudget_breaker_state",
            "Token circuit breaker: 0 closed, 1 half-open, 2 open",
            labels=["namespace", "budget"],
        )
        book = self._book
        for state in book.states():
            ns, name = state.budget.namespace, state.budget.name
            for period in list(state.limits):
                limit = state.limit_state(period, now)
                values = [ns, name, period.value]
                if limit.amount_micros is not None:
                    limit_usd.add_metric(values, limit.amount_micros / 1e6)
                    spent_usd.add_metric(values, limit.spent_micros / 1e6)
                if limit.limit.tokens is not None:
                    limit_tokens.add_metric(values, limit.limit.tokens)
                    spent_tokens.add_metric(values, limit.spent_tokens)
                used.add_metric(values, limit.percent_used() / 100)
            breaker_state = book.breaker_state(state, now)
            if breaker_state is not None:
                breaker.add_metric([ns, name], BREAKER_VALUES[breaker_state])
        yield from (limit_usd, spent_usd, limit_tokens, spent_tokens, used, breaker)


class Metrics:
    def __init__(self, book: BudgetBook, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestCollector()
        r = self.registry
        self.refused = Counter(
            "llmbudget_refused_requests",
            "Requests refused by a budget or breaker",
            ["namespace", "budget", "code"],
            registry=r,
        )
        self.unclean_shutdowns = Counter(
            "llmbudget_unclean_shutdowns",
            "Starts that found the previous process killed before a clean shutdown (0 or 1)",
            registry=r,
        )
        self.rate_limited = Counter(
            "llmbudget_rate_limited_requests",
            "Requests refused by a per-key rate limit",
            ["namespace"],
            registry=r,
        )
        self.spend_spike = Gauge(
            "llmbudget_spend_spike",
            '1 while today\'s spend of a namespace (project "": all of it) or project is a '
            "spike over yesterday's",
            ["namespace", "project"],
            registry=r,
        )
        self.ledger_unavailable = Counter(
            "llmbudget_ledger_unavailable",
            "Requests that found the shared ledger database unreachable",
            registry=r,
        )
        self.cache_requests = Counter(
            "llmbudget_cache_requests",
            "Requests to cached routes, by result (hit, miss, bypass)",
            ["namespace", "model", "result"],
            registry=r,
        )
        self.cache_saved = Counter(
            "llmbudget_cache_saved_usd",
            "Dollars not spent thanks to cache hits (the cost of the cached answer)",
            ["namespace", "model"],
            registry=r,
        )
        self.reloads = Counter(
            "llmbudget_config_reloads", "Config reloads, by result", ["result"], registry=r
        )
        self.config_revision = Gauge(
            "llmbudget_config_info", "The loaded config revision", ["revision"], registry=r
        )
        Gauge(
            "llmbudget_ledger_queue_depth", "Ledger rows waiting to be written", registry=r
        ).set_function(lambda: float(queue_depth()))
        r.register(_BudgetCollector(book))
        r.register(self.requests)

    def series(self, namespace: str, model: str) -> ModelSeries:
        return self.requests.get(namespace, model)

    def set_revision(self, revision: str) -> None:
        self.config_revision.clear()
        self.config_revision.labels(revision).set(1)
