"""Spend spikes: a day whose spend is more than a configured percentage above the day before,
per namespace and per namespace/project.

`find_spikes` is pure. A day is compared with the day before only when that day had spend
(a first day of spend has no percentage) and when the day's own spend reaches a floor
(`min_micros`), so a team going from 1 cent to 5 cents is not an incident. Today is compared
as it stands: a spike is reported as soon as today's spend so far passes the mark, never
because a day is incomplete (a partial day only under-counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

Scope = tuple[str, str | None]  # (namespace, project or None for the whole namespace)


@dataclass(frozen=True)
class Spike:
    day: date
    namespace: str
    project: str | None
    spent_micros: int
    previous_micros: int

    @property
    def change_percent(self) -> int:
        """Increase over the day before, in whole percent (rounded down)."""
        return (self.spent_micros - self.previous_micros) * 100 // self.previous_micros

    @property
    def key(self) -> str:
        """Identifies the spike for 'already reported' bookkeeping."""
        return f"{self.day.isoformat()}/{self.project or ''}"


def find_spikes(
    daily: Mapping[Scope, Mapping[date, int]],
    days: Iterable[date],
    threshold_percent: int,
    min_micros: int,
) -> list[Spike]:
    spikes = []
    wanted = sorted(days)
    for (namespace, project), spend in sorted(
        daily.items(), key=lambda i: (i[0][0], i[0][1] or "")
    ):
        for day in wanted:
            current = spend.get(day, 0)
            previous = spend.get(day - timedelta(days=1), 0)
            if previous <= 0 or current < min_micros:
                continue
            if (current - previous) * 100 > threshold_percent * previous:
                spikes.append(Spike(day, namespace, project, current, previous))
    return spikes
