"""End-of-period spend forecasts for budget limits: a documented, testable method.

Method (`forecast`):

- **Hourly and Daily limits**: linear within the window: the spend rate so far
  (spent / elapsed, elapsed at least one minute) continues to the end of the window.
- **Weekly and Monthly limits**: a *weighted recent daily average*. The daily spend of the
  last up to 7 complete UTC days (from the ledger's daily rollups, before today) is averaged
  with weights 7, 6, ..., 1 (yesterday weighs most), days from the first day with spend on;
  that rate continues from now to the end of the window, on top of what is already spent.
  With no complete day of history it falls back to the linear method.

The forecast also says when the limit would be reached at that rate ("projected to exceed
on <date>"): `exceeds_at` is now when the limit is already reached, None when the projection
stays within it. Money is integer micro-dollars; rates are exact fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction

from llmbudget_gateway.contract.specs import Period
from llmbudget_gateway.periods import Window

HISTORY_DAYS = 7
DAY_SECONDS = Fraction(86_400)


@dataclass(frozen=True)
class Forecast:
    projected_micros: int
    rate_micros_per_day: int
    exceeds_at: datetime | None
    method: str  # "linear" or "weighted-daily-average"


def weighted_daily_rate(history: Sequence[tuple[date, int]], today: date) -> Fraction | None:
    """Micro-dollars per day from complete days before `today`, or None without history."""
    spend = {day: micros for day, micros in history if day < today}
    days = [today - timedelta(days=i) for i in range(1, HISTORY_DAYS + 1)]
    first = min((day for day, micros in spend.items() if micros > 0), default=None)
    if first is None:
        return None
    used = [
        (HISTORY_DAYS + 1 - i, spend.get(day, 0)) for i, day in enumerate(days, 1) if day >= first
    ]
    total_weight = sum(weight for weight, _ in used)
    return Fraction(sum(weight * micros for weight, micros in used)) / total_weight


def forecast(
    spent_micros: int,
    limit_micros: int | None,
    window: Window,
    now: datetime,
    history: Sequence[tuple[date, int]] = (),
) -> Forecast:
    remaining = Fraction(max((window.end - now).total_seconds(), 0.0))
    rate = None
    method = "linear"
    if window.period in (Period.WEEKLY, Period.MONTHLY):
        rate = weighted_daily_rate(history, now.date())
        if rate is not None:
            method = "weighted-daily-average"
    if rate is None:
        elapsed = Fraction(max((now - window.start).total_seconds(), 60.0))
        rate = Fraction(spent_micros) / elapsed * DAY_SECONDS
    projected = spent_micros + int(rate * remaining / DAY_SECONDS)
    exceeds_at = None
    if limit_micros is not None:
        if spent_micros >= limit_micros:
            exceeds_at = now
        elif projected > limit_micros and rate > 0:
            seconds = Fraction(limit_micros - spent_micros) / rate * DAY_SECONDS
            exceeds_at = now + timedelta(seconds=float(seconds))
    return Forecast(projected, int(rate), exceeds_at, method)
