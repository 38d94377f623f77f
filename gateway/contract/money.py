"""Dollar amounts and prices as exact decimals. Never floats.

Amounts are decimal strings in the CRDs ("500", "12.50"); the gateway keeps money as
integer micro-dollars (1 USD = 1,000,000) on its hot path, and Decimal everywhere else.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

MICROS_PER_USD = 1_000_000
_USD = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,6})?$")
_PRICE = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9})?$")


def _decimal(text: object, pattern: re.Pattern[str], what: str) -> Decimal:
    if isinstance(text, Decimal):
        text = format(text, "f")
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f'{what} must be a decimal string such as "12.50", not {text!r}')
    text = str(text)
    if not pattern.match(text):
        raise ValueError(f'{what} must be a decimal string such as "12.50", not {text!r}')
    return Decimal(text)


def parse_usd(text: object) -> Decimal:
    """A non-negative USD amount with at most 6 decimal places (micro-dollar precision)."""
    return _decimal(text, _USD, "a USD amount")


def parse_price(text: object) -> Decimal:
    """A non-negative price in USD per million tokens (up to 9 decimal places)."""
    return _decimal(text, _PRICE, "a price per million tokens")


def usd_to_micros(amount: Decimal) -> int:
    """Whole micro-dollars, rounding fractions of a micro-dollar up."""
    return int((amount * MICROS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def micros_to_usd(micros: int) -> Decimal:
    """Exact USD for an integer number of micro-dollars."""
    return Decimal(micros) / MICROS_PER_USD


def format_usd(amount: Decimal) -> str:
    """A decimal string with no exponent and no trailing zeros beyond cents: "12.50", "0.000123"."""
    text = format(amount.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _plain(value: Decimal) -> str:
    return format(value, "f")


USD = Annotated[Decimal, BeforeValidator(parse_usd), PlainSerializer(_plain, return_type=str)]
"""A USD amount: parsed from a decimal string, serialized back to one."""

PricePerMillion = Annotated[
    Decimal, BeforeValidator(parse_price), PlainSerializer(_plain, return_type=str)
]
"""USD per million tokens: parsed from a decimal string, serialized back to one."""
