"""Calendar-aligned budget periods in an IANA time zone.

A Daily period starts at local midnight, Weekly on Monday at local midnight, Monthly on the
first of the month, Hourly on the hour. Boundaries are computed on the local wall clock and
converted to UTC, so a day across a DST change lasts 23 or 25 hours and a month ends exactly on
its last day (28, 29, 30 or 31). A wall-clock time that does not exist (a spring-forward gap)
resolves to the first instant after the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from llmbudget_gateway.contract.specs import Period


@dataclass(frozen=True)
class Window:
    """One period: [start, end) in UTC."""

    period: Period
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def _local_start(period: Period, local: datetime) -> datetime:
    naive = local.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAILY:
        return naive
    if period is Period.WEEKLY:
        return naive - timedelta(days=naive.weekday())
    return naive.replace(day=1)


def _next_local_start(period: Period, start: datetime) -> datetime:
    if period is Period.DAILY:
        return start + timedelta(days=1)
    if period is Period.WEEKLY:
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def _to_utc(naive_local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time; times in a DST gap move past the gap."""
    aware = naive_local.replace(tzinfo=zone, fold=0)
    as_utc = aware.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) != naive_local:
        # Nonexistent local time (spring forward): the period starts when the gap ends.
        later = naive_local.replace(tzinfo=zone, fold=1).astimezone(UTC)
        return max(as_utc, later)
    return as_utc


def window_at(period: Period, timezone: str, moment: datetime) -> Window:
    """The period containing `moment` (an aware datetime)."""
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    if period is Period.HOURLY:
        # Truncate on the local clock keeping its offset (and fold): correct in a repeated
        # fall-back hour and for zones with half-hour offsets.
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        return Window(period, start, start + timedelta(hours=1))
    start_local = _local_start(period, local)
    return Window(
        period,
        _to_utc(start_local, zone),
        _to_utc(_next_local_start(period, start_local), zone),
    )
