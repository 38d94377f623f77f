"""A loaded config, indexed for the hot path. Immutable: a reload builds a new one and swaps."""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass, field
from datetime import datetime

from llmbudget_gateway.contract.config import ApiKey, Backend, GatewayConfig, RateLimit, Route
from llmbudget_gateway.pricing import PriceBook


@dataclass(frozen=True)
class Caller:
    namespace: str
    key_name: str
    budget: str | None


@dataclass
class Runtime:
    config: GatewayConfig
    revision: str
    keys: dict[str, ApiKey]
    routes: dict[tuple[str, str], Route]  # (namespace or "*", model) -> route
    prices: PriceBook = field(default_factory=PriceBook)
    rate_limits: dict[tuple[str, str], RateLimit] = field(default_factory=dict)  # (ns, budget)

    @classmethod
    def build(cls, config: GatewayConfig) -> Runtime:
        routes: dict[tuple[str, str], Route] = {}
        for route in config.routes:
            routes["*" if route.shared else route.namespace, route.model] = route
        return cls(
            config=config,
            revision=config.revision,
            keys={key.sha256: key for key in config.keys},
            routes=routes,
            rate_limits={
                (budget.namespace, budget.name): budget.rate_limit
                for budget in config.budgets
                if budget.rate_limit is not None
            },
        )

    def authenticate(self, api_key: str, now: datetime) -> Caller | None:
        """The caller a key belongs to, or None. Keys are compared by SHA-256 in constant time."""
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        entry = self.keys.get(digest)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            return None
        if entry.not_after is not None and now >= entry.not_after:
            return None
        return Caller(entry.namespace, entry.name, entry.budget)

    def rate_limit_for(self, caller: Caller) -> RateLimit | None:
        if caller.budget is None:
            return None
        return self.rate_limits.get((caller.namespace, caller.budget))

    def route_for(self, namespace: str, model: str) -> Route | None:
        """The namespace's own route for a model first, then the shared one."""
        return self.routes.get((namespace, model)) or self.routes.get(("*", model))

    def models_for(self, namespace: str) -> list[str]:
        return sorted({model for (ns, model) in self.routes if ns in (namespace, "*")})


def pick_weighted(backends: list[Backend], rng: random.Random) -> Backend:
    """A backend chosen with probability proportional to its weight."""
    weighted = [b for b in backends if b.weight > 0]
    if not weighted:
        return backends[0]
    total = sum(b.weight for b in weighted)
    point = rng.random() * total
    for backend in weighted:
        point -= backend.weight
        if point < 0:
            return backend
    return weighted[-1]
