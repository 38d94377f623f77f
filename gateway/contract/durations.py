"""Go-style duration strings ("250ms", "5m", "1h30m") as used in the CRDs."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h))+$")
_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string such as "1h30m"; ValueError for anything else."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration such as '250ms', '30s', '5m' or '1h30m'")
    return sum(int(number) * _SECONDS[unit] for number, unit in _PART.findall(text))


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


def _check_positive(text: str) -> str:
    if parse_duration(text) <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A string field holding a valid duration (kept as written, parsed on use)."""

PositiveDuration = Annotated[str, AfterValidator(_check_positive)]
"""A duration longer than zero."""
