"""Backends without `pricing` are priced from the genai-prices database: checked against the
providers' published per-token prices (USD per million tokens), stated here.

| model | input | cache read | cache write | output | input above 200k tokens |
| --- | --- | --- | --- | --- | --- |
| gpt-4.1 (OpenAI) | 2.00 | 0.50 | - | 8.00 | - |
| gpt-4o-mini (OpenAI) | 0.15 | 0.075 | - | 0.60 | - |
| claude-sonnet-4-5 (Anthropic) | 3.00 | 0.30 | 3.75 | 15.00 | 6.00 / 0.60 / 7.50 / 22.50 |
| claude-3-5-haiku (Anthropic) | 0.80 | 0.08 | 1.00 | 4.00 | - |
| gemini-2.5-flash (Google, OpenAI-compatible URL) | 0.30 | 0.03 | - | 2.50 | - |

Anthropic's long-context rule: when a request's input (cache reads and writes included) is
above 200k tokens, every token of it is billed at the higher rates.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from llmbudget_gateway.contract.config import Backend
from llmbudget_gateway.contract.specs import Provider
from llmbudget_gateway.pricing import PriceBook
from llmbudget_gateway.usage import Usage
from tests.gateway.conftest import GatewayFactory
from tests.gateway.recording_provider import RecordingProvider
from tests.gateway.test_pricing_paths import modelroute, sdk
from tests.gateway.test_proxy_openai import records

OPENAI, ANTHROPIC = "https://api.openai.com/v1", "https://api.anthropic.com"
GOOGLE = "https://generativelanguage.googleapis.com/v1beta/openai"


def published(input_: str, read: str, write: str, output: str, usage: Usage) -> int:
    """Micro-dollars of `usage` at prices per million tokens (exact: 1e6 cancels)."""
    plain = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    total = (
        plain * Decimal(input_)
        + usage.cached_tokens * Decimal(read)
        + usage.cache_write_tokens * Decimal(write)
        + usage.completion_tokens * Decimal(output)
    )
    return int(-(-total // 1))


CASES: list[tuple[str, Provider, str, tuple[str, str, str, str], Usage]] = [
    ("gpt-4.1", Provider.OPENAI, OPENAI, ("2", "0.5", "2", "8"),
     Usage(prompt_tokens=12_000, cached_tokens=8_000, completion_tokens=900)),
    ("gpt-4o-mini", Provider.OPENAI, OPENAI, ("0.15", "0.075", "0.15", "0.6"),
     Usage(prompt_tokens=100_000, cached_tokens=40_000, completion_tokens=10_000)),
    ("claude-sonnet-4-5", Provider.ANTHROPIC, ANTHROPIC, ("3", "0.3", "3.75", "15"),
     Usage(prompt_tokens=50_000, cached_tokens=30_000, cache_write_tokens=10_000,
           completion_tokens=2_000)),
    ("claude-sonnet-4-5", Provider.ANTHROPIC, ANTHROPIC, ("6", "0.6", "7.5", "22.5"),
     Usage(prompt_tokens=250_000, cached_tokens=100_000, cache_write_tokens=50_000,
           completion_tokens=4_000)),  # above 200k: the long-context rates for all of it
    ("claude-sonnet-4-5", Provider.ANTHROPIC, ANTHROPIC, ("3", "0.3", "3.75", "15"),
     Usage(prompt_tokens=200_000, cached_tokens=150_000, completion_tokens=1_000)),  # at 200k
    ("claude-3-5-haiku-latest", Provider.ANTHROPIC, ANTHROPIC, ("0.8", "0.08", "1", "4"),
     Usage(prompt_tokens=9_000, cached_tokens=5_000, cache_write_tokens=2_000,
           completion_tokens=700)),
    ("gemini-2.5-flash", Provider.OPENAI, GOOGLE, ("0.3", "0.03", "0.3", "2.5"),
     Usage(prompt_tokens=40_000, cached_tokens=30_000, completion_tokens=3_000)),
]  # fmt: skip


@pytest.mark.parametrize(("model", "provider", "url", "prices", "usage"), CASES)
def test_database_prices_match_the_published_ones(
    model: str, provider: Provider, url: str, prices: tuple[str, str, str, str], usage: Usage
) -> None:
    backend = Backend(name="b", provider=provider, base_url=url, model=model)
    book = PriceBook()
    assert book.is_priced(backend)
    cost = book.cost(backend, usage)
    assert cost.priced and cost.micros == published(*prices, usage)


def test_the_reservation_at_database_prices_covers_the_dearest_split() -> None:
    backend = Backend(name="b", provider=Provider.ANTHROPIC, base_url=ANTHROPIC,
                      model="claude-sonnet-4-5")  # fmt: skip
    book = PriceBook()
    worst = book.worst_case(backend, 10_000, 1_000).micros
    # every input token a cache write (3.75 > 3): the dearest way 10k tokens in can cost
    assert worst == published("3", "0.3", "3.75", "15", Usage(10_000, 1_000, 0, 10_000))
    for usage in (Usage(10_000, 1_000), Usage(10_000, 1_000, 10_000), Usage(10_000, 1_000, 0, 5)):
        assert book.cost(backend, usage).micros <= worst


def test_an_unpriced_anthropic_backend_is_billed_at_database_prices_end_to_end(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    route = modelroute(
        "sonnet",
        "sonnet",
        f'    - {{name: claude, provider: Anthropic, baseURL: "{recorder.url}", '
        "model: claude-sonnet-4-5}\n",
    )
    gateway = make_gateway(extra=route)
    message: Any = sdk(gateway).messages.create(
        model="sonnet",
        max_tokens=20,
        messages=[{"role": "user", "content": "hello there " + "context " * 5000}],
        extra_body={"fake": {"cache_read": 3000, "cache_write": 500}},
    )
    (row,) = records(gateway)
    served = recorder.bills[0]
    usage = Usage(served.prompt_tokens, served.completion_tokens, 3000, 500)
    assert message.usage.cache_read_input_tokens == 3000
    assert not row["unpriced"] and row["cost_micros"] == published("3", "0.3", "3.75", "15", usage)
