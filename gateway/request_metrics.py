"""Per-request metrics kept as plain numbers and rendered at scrape time.

Every request updates about ten series (requests by status, tokens by type, per-budget
tokens, cost, latency and time-to-first-token histograms). prometheus_client's metric
children take a lock and validate on every update; here a request adds to ints on the event
loop thread, and `RequestCollector` turns them into counter and histogram families when
/metrics is scraped (on the same thread), under the same names and labels as before.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_TYPES = ("prompt", "completion", "cached", "reasoning")


@dataclass(slots=True)
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, result = 0, []
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.counts, strict=True):
            cumulative += count
            result.append((bound, float(cumulative)))
        return result


@dataclass(slots=True)
class ModelSeries:
    """The numbers of one (namespace, model)."""

    namespace: str
    model: str
    by_status: dict[int, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_TYPES, 0))
    by_budget: dict[str, list[int]] = field(default_factory=dict)  # budget -> [prompt, compl.]
    cost_micros: int = 0
    unpriced: int = 0
    estimated: int = 0
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)

    def count_status(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def budget(self, name: str) -> list[int]:
        pair = self.by_budget.get(name)
        if pair is None:
            pair = self.by_budget[name] = [0, 0]
        return pair


class RequestCollector(Collector):
    def __init__(self) -> None:
        self.series: dict[tuple[str, str], ModelSeries] = {}

    def get(self, namespace: str, model: str) -> ModelSeries:
        found = self.series.get((namespace, model))
        if found is None:
            found = self.series[namespace, model] = ModelSeries(namespace, model)
        return found

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "llmbudget_requests",
            "Requests answered, by HTTP status",
            labels=["namespace", "model", "status"],
        )
        tokens = CounterMetricFamily(
            "llmbudget_tokens", "Tokens billed, by type", labels=["namespace", "model", "type"]
        )
        budget_tokens = CounterMetricFamily(
            "llmbudget_budget_tokens",
            "Tokens billed, per TokenBudget the request matched (a request matched by two "
            "budgets counts in both; use llmbudget_tokens_total for namespace totals)",
            labels=["namespace", "budget", "model", "type"],
        )
        cost = CounterMetricFamily(
            "llmbudget_cost_usd", "Dollars billed", labels=["namespace", "model"]
        )
        unpriced = CounterMetricFamily(
            "llmbudget_unpriced_requests",
            "Requests to models with no known price",
            labels=["namespace", "model"],
        )
        estimated = CounterMetricFamily(
            "llmbudget_estimated_requests",
            "Requests billed from a token estimate (cut streams)",
            labels=["namespace", "model"],
        )
        latency = HistogramMetricFamily(
            "llmbudget_request_duration_seconds",
            "Time from request to the last byte of the response",
            labels=["namespace", "model"],
        )
        ttft = HistogramMetricFamily(
            "llmbudget_time_to_first_token_seconds",
            "Time from request to the first streamed token",
            labels=["namespace", "model"],
        )
        for (namespace, model), s in list(self.series.items()):
            labels = [namespace, model]
            for status, count in s.by_status.items():
                requests.add_metric([*labels, str(status)], count)
            for kind, count in s.tokens.items():
                tokens.add_metric([*labels, kind], count)
            for budget, (prompt, completion) in s.by_budget.items():
                budget_tokens.add_metric([namespace, budget, model, "prompt"], prompt)
                budget_tokens.add_metric([namespace, budget, model, "completion"], completion)
            cost.add_metric(labels, s.cost_micros / 1_000_000)
            unpriced.add_metric(labels, s.unpriced)
            estimated.add_metric(labels, s.estimated)
            latency.add_metric(labels, s.latency.buckets(), s.latency.total)
            ttft.add_metric(labels, s.ttft.buckets(), s.ttft.total)
        yield from (requests, tokens, budget_tokens, cost, unpriced, estimated, latency, ttft)
