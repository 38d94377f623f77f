"""TokenBudget status and alert bookkeeping from the gateway's usage report."""

from __future__ import annotations

from typing import Any

from llmbudget_operator.status import (
    changed,
    current_alerted,
    pending_alerts,
    status_from_usage,
    with_alerted,
)


def usage(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "namespace": "team",
        "name": "b",
        "state": "Warning",
        "governingPeriod": "Monthly",
        "percentUsed": 52.4,
        "limits": [
            {
                "period": "Monthly",
                "amountUsd": "500.00",
                "tokens": None,
                "spentUsd": "262.10",
                "spentTokens": 1000,
                "percentUsed": 52.42,
                "projectedUsd": "610.00",
                "periodStart": "2026-11-01T00:00:00Z",
                "periodEnd": "2026-12-01T00:00:00Z",
            },
            {
                "period": "Daily",
                "amountUsd": None,
                "tokens": 100000,
                "spentUsd": "1.00",
                "spentTokens": 2000,
                "percentUsed": 2.0,
                "projectedUsd": "2.00",
                "periodStart": "2026-11-23T00:00:00Z",
                "periodEnd": "2026-11-24T00:00:00Z",
            },
        ],
        "thresholdsCrossed": [
            {"period": "Monthly", "windowStart": "2026-11-01T00:00:00Z", "threshold": 50},
        ],
        "breakdown": {
            "models": [{"name": "gpt-4.1", "spentUsd": "262.10", "tokens": 1000, "requests": 9}],
            "projects": [],
            "users": [],
        },
        "breaker": None,
    }
    data.update(overrides)
    return data


def test_status_columns_come_from_the_governing_limit() -> None:
    status = status_from_usage(usage())
    assert (status["limit"], status["spent"], status["used"], status["percentUsed"]) == (
        "500.00 USD/Monthly",
        "262.10 USD",
        "52.4%",
        52,
    )
    assert status["periodEnd"] == "2026-12-01T00:00:00Z"
    assert status["limits"][1] == {
        "period": "Daily",
        "tokens": 100000,
        "spentUSD": "1.00",
        "spentTokens": 2000,
        "percentUsed": 2,
        "periodStart": "2026-11-23T00:00:00Z",
        "periodEnd": "2026-11-24T00:00:00Z",
    }
    assert status["breakdown"]["models"][0] == {
        "name": "gpt-4.1",
        "spentUSD": "262.10",
        "tokens": 1000,
        "requests": 9,
    }


def test_a_crossing_is_pending_until_recorded_then_never_again() -> None:
    u = usage()
    (alert,) = pending_alerts(u, [])
    assert (alert.period, alert.threshold, alert.limit) == ("Monthly", 50, "500.00 USD/Monthly")
    alerted = with_alerted([], u, [alert])
    assert alerted == [
        {"period": "Monthly", "periodStart": "2026-11-01T00:00:00Z", "thresholds": [50]}
    ]
    assert pending_alerts(u, alerted) == []


def test_a_new_period_re_arms_the_alerts() -> None:
    status = {
        "alerted": [
            {"period": "Monthly", "periodStart": "2026-10-01T00:00:00Z", "thresholds": [50, 75]}
        ]
    }
    assert current_alerted(usage(), status) == []
    assert len(pending_alerts(usage(), current_alerted(usage(), status))) == 1


def test_crossings_of_past_windows_are_ignored() -> None:
    u = usage(
        thresholdsCrossed=[
            {"period": "Monthly", "windowStart": "2026-10-01T00:00:00Z", "threshold": 90}
        ]
    )
    assert pending_alerts(u, []) == []


def test_changed_ignores_sync_time_only() -> None:
    status = status_from_usage(usage())
    assert not changed({**status, "lastSyncTime": "x"}, status)
    assert changed({**status, "spentUSD": "1"}, status)


def test_a_usage_report_without_breakdown_keeps_the_old_one() -> None:
    partial = status_from_usage(usage(breakdown=None))
    assert "breakdown" not in partial
    current = status_from_usage(usage())
    assert not changed(current, partial)  # nothing it sets differs
