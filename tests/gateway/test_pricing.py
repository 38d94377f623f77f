"""Pricing: overrides, the price database, unpriced models, cached and reasoning tokens."""

from __future__ import annotations

from decimal import Decimal

from llmbudget_gateway.contract.config import Backend, Pricing
from llmbudget_gateway.contract.specs import Provider
from llmbudget_gateway.pricing import PriceBook
from llmbudget_gateway.usage import Usage


def backend(
    model: str,
    pricing: Pricing | None = None,
    provider: Provider = Provider.OPENAI,
    url: str = "https://api.openai.com/v1",
) -> Backend:
    return Backend(name="b", provider=provider, base_url=url, model=model, pricing=pricing)


def test_override_prices_every_kind_of_token() -> None:
    pricing = Pricing(
        input=Decimal("3"),
        cached_input=Decimal("0.3"),
        cache_write=Decimal("3.75"),
        output=Decimal("15"),
        reasoning=Decimal("20"),
    )
    usage = Usage(
        prompt_tokens=1000,
        cached_tokens=200,
        cache_write_tokens=100,
        completion_tokens=500,
        reasoning_tokens=300,
    )
    cost = PriceBook().cost(backend("m", pricing), usage)
    # 700*3 + 200*0.3 + 100*3.75 + 200*15 + 300*20 = 2100 + 60 + 375 + 3000 + 6000
    assert cost.priced and cost.micros == 11535


def test_defaults_for_cached_and_reasoning_follow_input_and_output() -> None:
    pricing = Pricing(input=Decimal("2"), output=Decimal("8"))
    usage = Usage(prompt_tokens=10, cached_tokens=10, completion_tokens=10, reasoning_tokens=5)
    assert PriceBook().cost(backend("m", pricing), usage).micros == 10 * 2 + 10 * 8


def test_fractions_round_up_never_to_zero() -> None:
    pricing = Pricing(input=Decimal("0.15"), output=Decimal("0.6"))
    assert PriceBook().cost(backend("m", pricing), Usage(prompt_tokens=1)).micros == 1


def test_database_prices_gpt_4_1_and_claude_cache() -> None:
    book = PriceBook()
    gpt = book.cost(
        backend("gpt-4.1"), Usage(prompt_tokens=1000, cached_tokens=400, completion_tokens=100)
    )
    assert gpt.priced and gpt.micros == 600 * 2 + 400 * Decimal("0.5") + 100 * 8
    claude = backend(
        "claude-sonnet-4-5", provider=Provider.ANTHROPIC, url="https://api.anthropic.com"
    )
    usage = Usage.from_anthropic(
        {
            "input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 200,
            "output_tokens": 50,
        }
    )
    assert usage is not None and usage.prompt_tokens == 1300
    cost = book.cost(claude, usage)
    # 100*3 + 1000*0.3 + 200*3.75 + 50*15 = 300 + 300 + 750 + 750
    assert cost.priced and cost.micros == 2100


def test_unknown_model_is_unpriced_not_free() -> None:
    book = PriceBook()
    b = backend("my-private-llm", url="http://10.1.2.3:8000/v1")
    assert not book.is_priced(b)
    cost = book.cost(b, Usage(prompt_tokens=100, completion_tokens=100))
    assert cost == cost.__class__(0, False)


def test_usage_parsing_ignores_garbage() -> None:
    assert Usage.from_openai(None) is None
    parsed = Usage.from_openai(
        {
            "prompt_tokens": "7",
            "completion_tokens": -3,
            "prompt_tokens_details": {"cached_tokens": 99},
        }
    )
    assert parsed == Usage()
