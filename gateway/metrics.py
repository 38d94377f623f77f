"""Prometheus metrics, on a registry owned by the app (no global state).

Base units and `_total` suffixes. Labels never carry user ids, session ids or keys: only
namespace, budget, model, token type and status. Budget gauges and breaker states are computed
at scrape time from the budget book.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmbudget_gateway.breaker import BreakerState
from llmbudget_gateway.budgets import BudgetBook

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
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


@dataclass
class ModelSeries:
    """The metric children of one (namespace, model), looked up once (label lookups lock)."""

    namespace: str
    model: str
    metrics: Metrics
    latency: Any
    ttft: Any
    prompt_tokens: Any
    completion_tokens: Any
    cached_tokens: Any
    reasoning_tokens: Any
    cost: Any
    unpriced: Any
    estimated: Any
    by_status: dict[int, Any] = field(default_factory=dict)

    _budgets: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def budget_tokens(self, budget: str) -> tuple[Any, Any]:
        """(prompt, completion) children of llmbudget_budget_tokens_total for one budget."""
        children = self._budgets.get(budget)
        if children is None:
            labels = (self.namespace, budget, self.model)
            children = self._budgets[budget] = (
                self.metrics.budget_tokens.labels(*labels, "prompt"),
                self.metrics.budget_tokens.labels(*labels, "completion"),
            )
        return children

    def requests(self, status: int) -> Any:
        child = self.by_status.get(status)
        if child is None:
            child = self.by_status[status] = self.metrics.requests.labels(
                self.namespace, self.model, str(status)
            )
        return child


class Metrics:
    def __init__(self, book: BudgetBook, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._series: dict[tuple[str, str], ModelSeries] = {}
        r = self.registry
        self.requests = Counter(
            "llmbudget_requests",
            "Requests answered, by HTTP status",
            ["namespace", "model", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "llmbudget_tokens", "Tokens billed, by type", ["namespace", "model", "type"], registry=r
        )
        self.budget_tokens = Counter(
            "llmbudget_budget_tokens",
            "Tokens billed, per TokenBudget the request matched (a request matched by two "
            "budgets counts in both; use llmbudget_tokens_total for namespace totals)",
            ["namespace", "budget", "model", "type"],
            registry=r,
        )
        self.cost = Counter(
            "llmbudget_cost_usd", "Dollars billed", ["namespace", "model"], registry=r
        )
        self.unpriced = Counter(
            "llmbudget_unpriced_requests",
            "Requests to models with no known price",
            ["namespace", "model"],
            registry=r,
        )
        self.estimated = Counter(
            "llmbudget_estimated_requests",
            "Requests billed from a token estimate (cut streams)",
            ["namespace", "model"],
            registry=r,
        )
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
        self.latency = Histogram(
            "llmbudget_request_duration_seconds",
            "Time from request to the last byte of the response",
            ["namespace", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "llmbudget_time_to_first_token_seconds",
            "Time from request to the first streamed token",
            ["namespace", "model"],
            buckets=LATENCY_BUCKETS,
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

    def series(self, namespace: str, model: str) -> ModelSeries:
        found = self._series.get((namespace, model))
        if found is None:
            labels = (namespace, model)
            found = self._series[labels] = ModelSeries(
                namespace,
                model,
                self,
                latency=self.latency.labels(*labels),
                ttft=self.ttft.labels(*labels),
                prompt_tokens=self.tokens.labels(*labels, "prompt"),
                completion_tokens=self.tokens.labels(*labels, "completion"),
                cached_tokens=self.tokens.labels(*labels, "cached"),
                reasoning_tokens=self.tokens.labels(*labels, "reasoning"),
                cost=self.cost.labels(*labels),
                unpriced=self.unpriced.labels(*labels),
                estimated=self.estimated.labels(*labels),
            )
        return found

    def set_revision(self, revision: str) -> None:
        self.config_revision.clear()
        self.config_revision.labels(revision).set(1)
