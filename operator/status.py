"""TokenBudget status from the gateway's usage report (pure functions, no cluster needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from llmbudget_operator.alerts import Alert

STATUS_FIELDS_COMPARED = (
    "state",
    "limit",
    "spent",
    "used",
    "percentUsed",
    "spentUSD",
    "spentTokens",
    "projectedUSD",
    "projectedExceedAt",
    "periodStart",
    "periodEnd",
    "limits",
    "breaker",
    "breakdown",
)


def _limit_text(limit: Mapping[str, Any]) -> str:
    if limit.get("amountUsd"):
        return f"{limit['amountUsd']} USD/{limit['period']}"
    return f"{limit['tokens']} tokens/{limit['period']}"


def _spent_text(limit: Mapping[str, Any]) -> str:
    if limit.get("amountUsd"):
        return f"{limit['spentUsd']} USD"
    return f"{limit['spentTokens']} tokens"


def _breakdown(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": str(r["name"])[:256],
            "spentUSD": r["spentUsd"],
            "tokens": r["tokens"],
            "requests": r["requests"],
        }
        for r in rows[:10]
    ]


def status_from_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """The usage part of a TokenBudget status, from GET /admin/v1/budgets/{ns}/{name}."""
    limits = usage["limits"]
    governing = next(lim for lim in limits if lim["period"] == usage["governingPeriod"])
    percent = float(governing["percentUsed"])
    status: dict[str, Any] = {
        "state": usage["state"],
        "limit": _limit_text(governing),
        "spent": _spent_text(governing),
        "used": f"{percent:.1f}%",
        "percentUsed": math.floor(percent),
        "spentUSD": governing["spentUsd"],
        "spentTokens": governing["spentTokens"],
        "projectedUSD": governing["projectedUsd"],
        "projectedExceedAt": governing.get("projectedExceedAt"),
        "periodStart": governing["periodStart"],
        "periodEnd": governing["periodEnd"],
        "limits": [
            {
                "period": lim["period"],
                **({"amountUSD": lim["amountUsd"]} if lim.get("amountUsd") else {}),
                **({"tokens": lim["tokens"]} if lim.get("tokens") else {}),
                "spentUSD": lim["spentUsd"],
                "spentTokens": lim["spentTokens"],
                "percentUsed": math.floor(float(lim["percentUsed"])),
                "periodStart": lim["periodStart"],
                "periodEnd": lim["periodEnd"],
            }
            for lim in limits
        ],
    }
    if usage.get("breakdown") is not None:  # None: not fetched this time, keep the old one
        status["breakdown"] = {
            key: _breakdown(usage["breakdown"].get(key, []))
            for key in ("models", "projects", "users")
        }
    breaker = usage.get("breaker")
    if breaker:
        status["breaker"] = {
            "state": breaker["state"],
            "tokensLastHour": breaker["tokensLastHour"],
            **({"openUntil": breaker["openUntil"]} if breaker.get("openUntil") else {}),
        }
    return status


def current_alerted(usage: Mapping[str, Any], status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """status.alerted, without entries of periods that have ended (their alerts re-arm)."""
    starts = {lim["period"]: lim["periodStart"] for lim in usage["limits"]}
    return [
        dict(entry)
        for entry in status.get("alerted") or []
        if starts.get(entry.get("period")) == entry.get("periodStart")
    ]


def pending_alerts(usage: Mapping[str, Any], alerted: list[dict[str, Any]]) -> list[Alert]:
    """Crossings the gateway recorded in current periods that status does not list yet."""
    done = {(e["period"], e["periodStart"], t) for e in alerted for t in e.get("thresholds", [])}
    limits = {lim["period"]: lim for lim in usage["limits"]}
    alerts = []
    for crossing in usage.get("thresholdsCrossed", []):
        limit = limits.get(crossing["period"])
        if limit is None or limit["periodStart"] != crossing["windowStart"]:
            continue
        if (crossing["period"], crossing["windowStart"], crossing["threshold"]) in done:
            continue
        alerts.append(
            Alert(
                namespace=usage["namespace"],
                budget=usage["name"],
                period=crossing["period"],
                threshold=int(crossing["threshold"]),
                percent=float(limit["percentUsed"]),
                spent=_spent_text(limit),
                limit=_limit_text(limit),
                projected=f"{limit['projectedUsd']} USD",
                period_end=limit["periodEnd"],
                state=usage["state"],
                exceeds_at=limit.get("projectedExceedAt"),
            )
        )
    return alerts


def with_alerted(
    alerted: list[dict[str, Any]], usage: Mapping[str, Any], sent: list[Alert]
) -> list[dict[str, Any]]:
    by_period = {e["period"]: {**e, "thresholds": list(e.get("thresholds", []))} for e in alerted}
    starts = {lim["period"]: lim["periodStart"] for lim in usage["limits"]}
    for alert in sent:
        entry = by_period.setdefault(
            alert.period,
            {"period": alert.period, "periodStart": starts[alert.period], "thresholds": []},
        )
        if alert.threshold not in entry["thresholds"]:
            entry["thresholds"] = sorted([*entry["thresholds"], alert.threshold])
    return sorted(by_period.values(), key=lambda e: str(e["period"]))


def changed(current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether `new` (a partial status) differs from `current` in any field it sets."""
    return any(current.get(key) != new[key] for key in STATUS_FIELDS_COMPARED if key in new)
