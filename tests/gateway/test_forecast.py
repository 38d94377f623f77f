"""The forecast method: linear within short windows, weighted daily average for long ones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from llmbudget_gateway.contract.specs import Period
from llmbudget_gateway.forecast import forecast, weighted_daily_rate
from llmbudget_gateway.periods import window_at

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)  # day 10 of a 30-day month, noon
MONTH = window_at(Period.MONTHLY, "UTC", NOW)
TODAY = NOW.date()


def days_before(*micros: int) -> list[tuple[date, int]]:
    """micros[0] is yesterday's spend, micros[1] the day before, ..."""
    return [(TODAY - timedelta(days=i + 1), m) for i, m in enumerate(micros)]


def test_weights_favour_recent_days() -> None:
    flat = weighted_daily_rate(days_before(*[100] * 7), TODAY)
    assert flat == 100
    older = weighted_daily_rate(days_before(0, 0, 700, 700, 700, 700, 700), TODAY)
    assert older == 700 * (5 + 4 + 3 + 2 + 1) / 28  # weights 7, 6, ..., 1 sum to 28
    recent = weighted_daily_rate(days_before(700, 700, 700, 700, 700, 0, 0), TODAY)
    assert recent is not None and older is not None and recent > older
    # only days from the first with spend on: a new team is not diluted by empty days
    assert weighted_daily_rate(days_before(300, 100), TODAY) == Fraction(7 * 300 + 6 * 100, 13)
    assert weighted_daily_rate([], TODAY) is None
    assert weighted_daily_rate([(TODAY, 500)], TODAY) is None  # today is not complete


def test_monthly_projection_uses_the_recent_rate_not_the_month_average() -> None:
    # 9.5 days spent at 1 USD/day, then the last 3 days at 10 USD/day: linear says ~1.7 USD/day
    history = days_before(10_000_000, 10_000_000, 10_000_000, 1_000_000, 1_000_000)
    result = forecast(36_500_000, 100_000_000, MONTH, NOW, history)
    assert result.method == "weighted-daily-average"
    rate = (7 * 10 + 6 * 10 + 5 * 10 + 4 * 1 + 3 * 1) * 1_000_000 // 25
    assert result.rate_micros_per_day == rate
    assert result.projected_micros == 36_500_000 + rate * 20 + rate // 2
    assert result.exceeds_at is not None
    expected = NOW + timedelta(days=(100_000_000 - 36_500_000) / rate)
    assert abs((result.exceeds_at - expected).total_seconds()) < 1


def test_linear_for_daily_limits_and_without_history() -> None:
    day = window_at(Period.DAILY, "UTC", NOW)
    result = forecast(500_000, 2_000_000, day, NOW)  # half a day, 0.5 USD
    assert result.method == "linear" and result.projected_micros == 1_000_000
    assert result.exceeds_at is None
    monthly = forecast(3_000_000, None, MONTH, NOW)  # no history: linear over 9.5 days
    assert monthly.method == "linear"
    assert monthly.projected_micros == 3_000_000 + 3_000_000 * 41 // 19  # 20.5 days left


def test_already_exceeded_reports_now() -> None:
    day = window_at(Period.DAILY, "UTC", NOW)
    assert forecast(2_000_000, 2_000_000, day, NOW).exceeds_at == NOW
    assert forecast(0, 2_000_000, day, NOW).exceeds_at is None
