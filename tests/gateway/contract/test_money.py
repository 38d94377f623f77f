from __future__ import annotations

from decimal import Decimal

import pytest

from llmbudget_gateway.contract.money import (
    format_usd,
    micros_to_usd,
    parse_price,
    parse_usd,
    usd_to_micros,
)


@pytest.mark.parametrize("text", ["0.1", "500", "12.50", "0.000001"])
def test_usd_round_trips_exactly(text: str) -> None:
    assert micros_to_usd(usd_to_micros(parse_usd(text))) == Decimal(text)


@pytest.mark.parametrize("bad", ["-1", "1e3", "1.0000001", "", " 1", "NaN", "1,5", 1.5, True])
def test_malformed_usd(bad: object) -> None:
    with pytest.raises(ValueError, match="decimal string"):
        parse_usd(bad)


def test_fractions_of_a_micro_dollar_round_up() -> None:
    # 3 tokens at $0.15 per million = $0.00000045 -> 1 micro-dollar, never 0.
    assert usd_to_micros(Decimal("0.15") * 3 / 1_000_000) == 1
    assert usd_to_micros(Decimal("2.000001")) == 2_000_001


def test_prices_allow_nine_decimals() -> None:
    assert parse_price("0.075") == Decimal("0.075")
    assert parse_price("0.000000001") == Decimal("0.000000001")


def test_format_usd() -> None:
    assert format_usd(Decimal("12.5")) == "12.50"
    assert format_usd(Decimal("500")) == "500.00"
    assert format_usd(Decimal("0.000123")) == "0.000123"
    assert format_usd(Decimal("1E+3")) == "1000.00"
