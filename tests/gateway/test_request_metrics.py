"""Per-request metrics as plain numbers, rendered in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from llmbudget_gateway.request_metrics import Histogram, RequestCollector


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = Histogram()
    for seconds in (0.005, 0.006, 0.3, 500.0):  # on a bound, between, in the middle, past all
        histogram.observe(seconds)
    buckets = dict(histogram.buckets())
    assert buckets["0.005"] == 1  # le: a value on the bound counts in that bucket
    assert buckets["0.01"] == 2 and buckets["0.25"] == 2 and buckets["0.5"] == 3
    assert buckets["120"] == 3 and buckets["+Inf"] == 4
    assert histogram.total == 0.005 + 0.006 + 0.3 + 500.0


def test_the_collector_renders_counters_and_histograms() -> None:
    collector = RequestCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    series = collector.get("team", "gpt-4.1")
    series.count_status(200)
    series.count_status(200)
    series.count_status(429)
    series.tokens["prompt"] += 7
    series.cost_micros += 110
    series.budget("team")[1] += 12
    series.latency.observe(0.02)
    text = generate_latest(registry).decode()
    assert 'llmbudget_requests_total{model="gpt-4.1",namespace="team",status="200"} 2.0' in text
    assert 'llmbudget_requests_total{model="gpt-4.1",namespace="team",status="429"} 1.0' in text
    assert 'llmbudget_tokens_total{model="gpt-4.1",namespace="team",type="prompt"} 7.0' in text
    assert 'llmbudget_cost_usd_total{model="gpt-4.1",namespace="team"} 0.00011' in text
    assert (
        'llmbudget_budget_tokens_total{budget="team",model="gpt-4.1",namespace="team",'
        'type="completion"} 12.0'
    ) in text
    assert (
        'llmbudget_request_duration_seconds_bucket{le="0.025",model="gpt-4.1",namespace="team"} 1.0'
    ) in text
    assert 'llmbudget_request_duration_seconds_count{model="gpt-4.1",namespace="team"} 1.0' in text
