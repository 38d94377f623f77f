"""The complexity scorer: deterministic points for what makes a request hard."""

from __future__ import annotations

from typing import Any

from llmbudget_gateway.complexity import choose_tier, score
from llmbudget_gateway.contract.config import Backend, Route, Tier
from llmbudget_gateway.contract.specs import Provider


def chat(*texts: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": t} for t in texts], **extra}


def test_a_greeting_is_simple() -> None:
    assert score(chat("hi there")) == 0


def test_each_signal_adds_its_documented_points() -> None:
    assert score(chat("x" * 1000)) == 5  # ~250 tokens
    assert score(chat("x" * 16000)) == 30  # ~4,000 tokens
    assert score(chat("fix this:\n```py\nprint(1)\n```")) == 15
    assert score(chat("prove it, step by step")) == 20  # two reasoning words
    assert score(chat("first load, then clean, finally plot")) == 10
    assert score(chat("hi", tools=[{"type": "function"}])) == 15
    image = [{"type": "image_url", "image_url": {"url": "data:"}}]
    assert score({"messages": [{"role": "user", "content": image}]}) == 15
    assert score(chat(*["a"] * 7)) == 10 and score(chat(*["a"] * 13)) == 15


def test_the_score_is_capped_and_deterministic() -> None:
    hard = chat(
        *["earlier turn"] * 12,
        "```a```\n```b```\n```c```\nprove why and derive, analyse step by step\n"
        "1. a\n2. b\n" + "x" * 20000,
        tools=[{}],
    )
    assert score(hard) == score(hard) == 100


def test_tiers_take_the_first_tier_whose_max_score_fits() -> None:
    backend = Backend(name="b", provider=Provider.OPENAI, base_url="http://x/v1", model="m")
    route = Route(
        namespace="ns",
        name="auto",
        model="auto",
        backends=[backend],
        tiers=[Tier(name="simple", backend="b", max_score=30), Tier(name="complex", backend="b")],
    )
    assert choose_tier(route, chat("hi")).tier.name == "simple"
    decision = choose_tier(route, chat("prove it step by step:\n```\ncode\n```"))
    assert decision.tier.name == "complex" and decision.header("b").startswith("tier=complex")
