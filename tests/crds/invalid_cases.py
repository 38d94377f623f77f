"""Invalid TokenBudget/ModelRoute specs that the API server (and the standalone validator) reject.

Each case: an id, the kind, a spec, the field path the API server must name, and a fragment of
its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    spec: dict[str, Any]
    field: str
    message: str


def budget(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"limits": [{"period": "Monthly", "amount": "100"}]}
    spec.update(overrides)
    return spec


def backend(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "main", "provider": "OpenAI", "baseURL": "https://x.example/v1"}
    spec.update(overrides)
    return spec


def route(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": "gpt-4.1", "backends": [backend()]}
    spec.update(overrides)
    return spec


TB, MR = "TokenBudget", "ModelRoute"

CASES = [
    Case(
        "zero-rate-limit",
        TB,
        budget(rateLimit={"requestsPerMinute": 0}),
        "spec.rateLimit.requestsPerMinute",
        "should be greater than or equal to 1",
    ),
    Case(
        "rate-limit-without-rate",
        TB,
        budget(rateLimit={"burst": 5}),
        "spec.rateLimit.requestsPerMinute",
        "Required value",
    ),
    Case(
        "zero-amount",
        TB,
        budget(limits=[{"period": "Daily", "amount": "0.00"}]),
        "spec.limits[0].amount",
        "greater than zero",
    ),
    Case(
        "negative-amount",
        TB,
        budget(limits=[{"period": "Daily", "amount": "-5"}]),
        "spec.limits[0].amount",
        "should match",
    ),
    Case(
        "malformed-amount",
        TB,
        budget(limits=[{"period": "Daily", "amount": "12.5.3"}]),
        "spec.limits[0].amount",
        "should match",
    ),
    Case(
        "too-precise-amount",
        TB,
        budget(limits=[{"period": "Daily", "amount": "1.0000001"}]),
        "spec.limits[0].amount",
        "should match",
    ),
    Case(
        "zero-tokens",
        TB,
        budget(limits=[{"period": "Daily", "tokens": 0}]),
        "spec.limits[0].tokens",
        "greater than or equal to 1",
    ),
    Case(
        "unknown-period",
        TB,
        budget(limits=[{"period": "Yearly", "amount": "5"}]),
        "spec.limits[0].period",
        "Unsupported value",
    ),
    Case(
        "empty-limit",
        TB,
        budget(limits=[{"period": "Daily"}]),
        "spec.limits[0]",
        "a limit needs amount",
    ),
    Case("no-limits", TB, budget(limits=[]), "spec.limits", "at least 1 item"),
    Case("missing-limits", TB, {"timezone": "UTC"}, "spec.limits", "Required value"),
    Case(
        "duplicate-period",
        TB,
        budget(limits=[{"period": "Daily", "amount": "5"}, {"period": "Daily", "amount": "6"}]),
        "spec.limits[1]",
        "Duplicate value",
    ),
    Case(
        "threshold-over-100",
        TB,
        budget(alerts={"thresholds": [50, 120]}),
        "spec.alerts.thresholds[1]",
        "less than or equal to 100",
    ),
    Case(
        "threshold-zero",
        TB,
        budget(alerts={"thresholds": [0, 50]}),
        "spec.alerts.thresholds[0]",
        "greater than or equal to 1",
    ),
    Case(
        "thresholds-unsorted",
        TB,
        budget(alerts={"thresholds": [90, 50]}),
        "spec.alerts.thresholds",
        "ascending order",
    ),
    Case(
        "thresholds-duplicate",
        TB,
        budget(alerts={"thresholds": [50, 50]}),
        "spec.alerts.thresholds[1]",
        "Duplicate value",
    ),
    Case(
        "downgrade-without-target",
        TB,
        budget(onExceeded={"action": "Downgrade"}),
        "spec.onExceeded",
        "downgradeTo is required",
    ),
    Case(
        "target-without-downgrade",
        TB,
        budget(onExceeded={"action": "Block", "downgradeTo": "deepseek-v3.2"}),
        "spec.onExceeded",
        "only allowed when",
    ),
    Case(
        "unknown-action",
        TB,
        budget(onExceeded={"action": "Throttle"}),
        "spec.onExceeded.action",
        "Unsupported value",
    ),
    Case(
        "zero-cooldown",
        TB,
        budget(circuitBreaker={"tokensPerHour": 10, "cooldown": "0s"}),
        "spec.circuitBreaker.cooldown",
        "longer than zero",
    ),
    Case(
        "prose-cooldown",
        TB,
        budget(circuitBreaker={"tokensPerHour": 10, "cooldown": "5 minutes"}),
        "spec.circuitBreaker.cooldown",
        "should match",
    ),
    Case(
        "zero-breaker",
        TB,
        budget(circuitBreaker={"tokensPerHour": 0}),
        "spec.circuitBreaker.tokensPerHour",
        "greater than or equal to 1",
    ),
    Case(
        "unknown-scope-tag",
        TB,
        budget(scope={"tags": {"team": "x"}}),
        "spec.scope.tags",
        "keys must be one of",
    ),
    Case(
        "unknown-webhook-format",
        TB,
        budget(
            alerts={"webhooks": [{"name": "w", "format": "Email", "urlSecretRef": {"name": "s"}}]}
        ),
        "spec.alerts.webhooks[0].format",
        "Unsupported value",
    ),
    Case(
        "bad-key-name",
        TB,
        budget(apiKeys=[{"name": "Bad_Name"}]),
        "spec.apiKeys[0].name",
        "should match",
    ),
    Case("bad-timezone", TB, budget(timezone="Not a zone!"), "spec.timezone", "should match"),
    Case(
        "duplicate-backend",
        MR,
        route(backends=[backend(), backend()]),
        "spec.backends[1]",
        "Duplicate value",
    ),
    Case(
        "unknown-provider",
        MR,
        route(backends=[backend(provider="Gemini")]),
        "spec.backends[0].provider",
        "Unsupported value",
    ),
    Case(
        "ftp-baseurl",
        MR,
        route(backends=[backend(baseURL="ftp://x.example/")]),
        "spec.backends[0].baseURL",
        "absolute http or https URL",
    ),
    Case(
        "relative-baseurl",
        MR,
        route(backends=[backend(baseURL="/v1")]),
        "spec.backends[0].baseURL",
        "absolute http or https URL",
    ),
    Case(
        "tier-unknown-backend",
        MR,
        route(tiers=[{"name": "simple", "backend": "nope"}]),
        "spec.tiers",
        "must name a backend",
    ),
    Case(
        "fallback-unknown-backend",
        MR,
        route(fallbacks=["nope"]),
        "spec.fallbacks",
        "must name backends",
    ),
    Case(
        "all-weights-zero",
        MR,
        route(backends=[backend(weight=0)]),
        "spec.backends",
        "weight must be greater than zero",
    ),
    Case(
        "negative-weight",
        MR,
        route(backends=[backend(weight=-1)]),
        "spec.backends[0].weight",
        "greater than or equal to 0",
    ),
    Case(
        "tier-without-maxscore",
        MR,
        route(
            tiers=[{"name": "simple", "backend": "main"}, {"name": "complex", "backend": "main"}]
        ),
        "spec.tiers",
        "maxScore is required",
    ),
    Case(
        "pricing-without-output",
        MR,
        route(backends=[backend(pricing={"input": "1"})]),
        "spec.backends[0].pricing.output",
        "Required value",
    ),
    Case(
        "pricing-not-decimal",
        MR,
        route(backends=[backend(pricing={"input": "cheap", "output": "1"})]),
        "spec.backends[0].pricing.input",
        "should match",
    ),
    Case("bad-model-name", MR, route(model="my model"), "spec.model", "should match"),
    Case(
        "too-many-retries",
        MR,
        route(retry={"attempts": 11}),
        "spec.retry.attempts",
        "less than or equal to 10",
    ),
    Case(
        "zero-timeout",
        MR,
        route(backends=[backend(timeout="0s")]),
        "spec.backends[0].timeout",
        "longer than zero",
    ),
    Case("no-backends", MR, route(backends=[]), "spec.backends", "at least 1 item"),
]
