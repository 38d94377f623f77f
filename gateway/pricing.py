"""Pricing: what a request's usage costs, in integer micro-dollars.

Prices come from the ModelRoute backend's `pricing` override when present, otherwise from the
`genai-prices` database (matched by provider URL, then provider, then model name). A model
neither knows is *unpriced*: it is served and its tokens are counted, but its cost is recorded
as unknown (flag `unpriced`), never as a silent $0.

With prices p (USD per million tokens) and token counts n, cost in micro-dollars is exactly
sum(n * p): the two factors of a million cancel. Fractions of a micro-dollar round up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from llmbudget_gateway.contract.config import Backend, Pricing
from llmbudget_gateway.contract.money import MICROS_PER_USD
from llmbudget_gateway.usage import Usage

NANOS = 10**9  # prices are kept as integer nano-dollars per million tokens
_PROVIDER_IDS = {"OpenAI": "openai", "Anthropic": "anthropic"}


@dataclass(frozen=True, slots=True)
class Cost:
    micros: int
    priced: bool


@dataclass(frozen=True, slots=True)
class Rates:
    """Integer nano-dollars per million tokens for each kind of token."""

    input: int
    cached_input: int
    cache_write: int
    output: int
    reasoning: int

    @classmethod
    def from_pricing(cls, pricing: Pricing) -> Rates:
        def nanos(price: Decimal | None, default: Decimal) -> int:
            return int((price if price is not None else default) * NANOS)

        return cls(
            input=nanos(pricing.input, pricing.input),
            cached_input=nanos(pricing.cached_input, pricing.input),
            cache_write=nanos(pricing.cache_write, pricing.input),
            output=nanos(pricing.output, pricing.output),
            reasoning=nanos(pricing.reasoning, pricing.output),
        )

    def cost_micros(self, usage: Usage) -> int:
        uncached = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        visible_output = max(usage.completion_tokens - usage.reasoning_tokens, 0)
        nanos = (
            uncached * self.input
            + usage.cached_tokens * self.cached_input
            + usage.cache_write_tokens * self.cache_write
            + visible_output * self.output
            + usage.reasoning_tokens * self.reasoning
        )
        return -(-nanos // NANOS)  # ceiling division


class PriceBook:
    """Prices for the backends of one config. Lookups in the database are cached."""

    def __init__(self) -> None:
        # Overrides are cached by the price itself: two backends of one upstream model may
        # carry different `pricing` (a team's negotiated price), and each bills at its own.
        self._overrides: dict[Pricing, Rates] = {}
        self._database: dict[tuple[str, str, str], Any] = {}

    @staticmethod
    def _key(backend: Backend) -> tuple[str, str, str]:
        return (backend.provider.value, backend.base_url, backend.model)

    def _database_price(self, backend: Backend) -> Any:
        key = self._key(backend)
        if key not in self._database:
            self._database[key] = _lookup_database(backend)
        return self._database[key]

    def is_priced(self, backend: Backend) -> bool:
        return backend.pricing is not None or self._database_price(backend) is not None

    def cost(self, backend: Backend, usage: Usage) -> Cost:
        if backend.pricing is not None:
            rates = self._overrides.get(backend.pricing)
            if rates is None:
                rates = self._overrides[backend.pricing] = Rates.from_pricing(backend.pricing)
            return Cost(rates.cost_micros(usage), True)
        model_price = self._database_price(backend)
        if model_price is None:
            return Cost(0, False)
        from genai_prices import Usage as DbUsage

        price = model_price.calc_price(
            DbUsage(
                input_tokens=usage.prompt_tokens,
                cache_read_tokens=usage.cached_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=usage.completion_tokens,
            )
        )
        total: Decimal = price["total_price"] if isinstance(price, dict) else price.total_price
        return Cost(math.ceil(total * MICROS_PER_USD), True)

    def worst_case(self, backend: Backend, prompt_tokens: int, completion_tokens: int) -> Cost:
        """The most `prompt_tokens` in and `completion_tokens` out can cost at this backend,
        whatever their split: every input token a cache write (dearer than plain input at
        Anthropic) or not, every output token reasoning (priced apart by some overrides) or
        not. A reservation at this price is never exceeded by the real usage."""
        shapes = [
            Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            Usage(
                prompt_tokens=prompt_tokens,
                cache_write_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            ),
        ]
        shapes += [
            Usage(
                prompt_tokens=u.prompt_tokens,
                cache_write_tokens=u.cache_write_tokens,
                completion_tokens=completion_tokens,
                reasoning_tokens=completion_tokens,
            )
            for u in list(shapes)
        ]
        costs = [self.cost(backend, usage) for usage in shapes]
        return Cost(max(c.micros for c in costs), all(c.priced for c in costs))


def _lookup_database(backend: Backend) -> Any:
    """The genai-prices ModelPrice for a backend, or None if the database does not know it."""
    from genai_prices import Usage as DbUsage
    from genai_prices import calc_price

    probe = DbUsage(input_tokens=1, output_tokens=1)
    attempts: list[dict[str, Any]] = [
        {"provider_api_url": backend.base_url},
        {"provider_id": _PROVIDER_IDS[backend.provider.value]},
        {},
    ]
    for where in attempts:
        try:
            return calc_price(probe, model_ref=backend.model, **where).model_price
        except LookupError:
            continue
    return None
