"""Calendar periods: month ends, leap days, DST in both directions, odd offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llmbudget_gateway.contract.specs import Period
from llmbudget_gateway.periods import window_at


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("period", "zone", "moment", "start", "end"),
    [
        (
            Period.MONTHLY,
            "UTC",
            "2024-02-29T23:59:59+00:00",
            "2024-02-01T00:00:00+00:00",
            "2024-03-01T00:00:00+00:00",
        ),  # leap day
        (
            Period.MONTHLY,
            "UTC",
            "2026-12-31T23:59:59+00:00",
            "2026-12-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
        ),  # year end
        (
            Period.MONTHLY,
            "America/Los_Angeles",
            "2026-12-01T07:59:59+00:00",
            "2026-11-01T07:00:00+00:00",
            "2026-12-01T08:00:00+00:00",
        ),  # still November in LA; DST
        (
            Period.DAILY,
            "UTC",
            "2024-02-29T12:00:00+00:00",
            "2024-02-29T00:00:00+00:00",
            "2024-03-01T00:00:00+00:00",
        ),
        (
            Period.DAILY,
            "Europe/Berlin",
            "2026-03-29T12:00:00+00:00",
            "2026-03-28T23:00:00+00:00",
            "2026-03-29T22:00:00+00:00",
        ),  # spring forward: a 23-hour day
        (
            Period.DAILY,
            "Europe/Berlin",
            "2026-10-25T12:00:00+00:00",
            "2026-10-24T22:00:00+00:00",
            "2026-10-25T23:00:00+00:00",
        ),  # fall back: a 25-hour day
        (
            Period.DAILY,
            "America/Santiago",
            "2026-09-06T12:00:00+00:00",
            "2026-09-06T04:00:00+00:00",
            "2026-09-07T03:00:00+00:00",
        ),  # midnight does not exist
        (
            Period.WEEKLY,
            "UTC",
            "2026-11-29T23:00:00+00:00",
            "2026-11-23T00:00:00+00:00",
            "2026-11-30T00:00:00+00:00",
        ),  # Sunday belongs to the week that began on Monday
        (
            Period.HOURLY,
            "Asia/Kolkata",
            "2026-11-23T10:10:00+00:00",
            "2026-11-23T09:30:00+00:00",
            "2026-11-23T10:30:00+00:00",
        ),  # half-hour offset
        (
            Period.HOURLY,
            "Europe/Berlin",
            "2026-10-25T01:30:00+00:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T02:00:00+00:00",
        ),  # the repeated 02:00 local hour is its own period
    ],
)
def test_windows(period: Period, zone: str, moment: str, start: str, end: str) -> None:
    window = window_at(period, zone, at(moment))
    assert (window.start, window.end) == (at(start), at(end))
    assert window.contains(at(moment))


def test_reset_is_exactly_at_the_boundary() -> None:
    boundary = at("2026-12-01T00:00:00+00:00")
    before = window_at(Period.MONTHLY, "UTC", boundary - timedelta(microseconds=1))
    after = window_at(Period.MONTHLY, "UTC", boundary)
    assert before.end == boundary == after.start
    assert not before.contains(boundary)


def test_consecutive_windows_tile_time_across_a_dst_year() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    for period in Period:
        window = window_at(period, "Europe/Berlin", moment)
        for _ in range(400 if period is not Period.HOURLY else 9000):
            following = window_at(period, "Europe/Berlin", window.end)
            assert following.start == window.end  # no gap, no overlap
            window = following
