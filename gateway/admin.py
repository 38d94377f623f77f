"""The admin API (its own bearer token): budget usage for the operator, ledger records.

GET /admin/v1/budgets                      usage of every TokenBudget
GET /admin/v1/budgets/{namespace}/{name}   usage of one
GET /admin/v1/records?namespace=&limit=    recent ledger rows
"""

from __future__ import annotations

import hmac
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from llmbudget_gateway.anomalies import Spike
from llmbudget_gateway.breaker import BreakerState
from llmbudget_gateway.budgets import BudgetState, LimitState
from llmbudget_gateway.contract.money import format_usd, micros_to_usd
from llmbudget_gateway.contract.specs import Period
from llmbudget_gateway.errors import GatewayError, bounded_int
from llmbudget_gateway.forecast import HISTORY_DAYS, Forecast, forecast
from llmbudget_gateway.ledger import reports
from llmbudget_gateway.services import Services

BREAKDOWN_TOP = 10
MAX_RECORDS = 1000


def _check_token(services: Services, request: Request) -> None:
    expected = services.settings.admin_token
    if not expected:
        raise GatewayError(
            403,
            "the admin API is disabled: start the gateway with an admin "
            "token (LLMBUDGET_ADMIN_TOKEN)",
            type="permission_error",
            code="admin_disabled",
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise GatewayError(
            401, "invalid admin token", type="authentication_error", code="invalid_admin_token"
        )


def _usd(micros: int) -> str:
    return format_usd(micros_to_usd(micros))


def spike_json(spike: Spike) -> dict[str, Any]:
    """A spend spike as the admin API shows it (usage report and anomalies report)."""
    return {
        "date": spike.day.isoformat(),
        "project": spike.project,
        "spentUsd": _usd(spike.spent_micros),
        "previousUsd": _usd(spike.previous_micros),
        "changePercent": spike.change_percent,
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _forecasts(
    services: Services, state: BudgetState, limits: list[LimitState], now: datetime
) -> list[Forecast]:
    """Each limit's forecast; Weekly and Monthly ones read the scope's recent daily spend."""
    history: list[tuple[date, int]] | None = []
    if any(limit.limit.period in (Period.WEEKLY, Period.MONTHLY) for limit in limits):
        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        history = await services.ledger.call(
            reports.scope_daily,
            services.store.db,
            state.budget.namespace,
            dict(state.budget.scope),
            today - timedelta(days=HISTORY_DAYS),
            today,
        )
    return [
        forecast(limit.spent_micros, limit.amount_micros, limit.window, now, history or ())
        for limit in limits
    ]


def budget_state_name(
    state: BudgetState, percent: float, breaker: BreakerState | None, exhausted: bool
) -> str:
    """BreakerOpen; Exceeded (100 % used, or a Block limit refused a request this period);
    Critical (90 %); Warning (the first threshold); else Ok."""
    if breaker is BreakerState.OPEN:
        return "BreakerOpen"
    if percent >= 100 or exhausted:
        return "Exceeded"
    if percent >= 90:
        return "Critical"
    if state.budget.thresholds and percent >= state.budget.thresholds[0]:
        return "Warning"
    return "Ok"


async def budget_usage(
    services: Services, state: BudgetState, now: datetime, with_breakdown: bool = True
) -> dict[str, Any]:
    budget = state.budget
    limits = []
    governing: tuple[float, LimitState] | None = None
    current = [state.limit_state(period, now) for period in list(state.limits)]
    forecasts = await _forecasts(services, state, current, now)
    for limit, outlook in zip(current, forecasts, strict=True):
        period = limit.limit.period
        percent = limit.percent_used()
        if governing is None or percent > governing[0]:
            governing = (percent, limit)
        limits.append(
            {
                "period": period.value,
                "amountUsd": format_usd(budget_limit)
                if (budget_limit := limit.limit.amount_usd)
                else None,
                "tokens": limit.limit.tokens,
                "spentUsd": _usd(limit.spent_micros),
                "spentMicros": limit.spent_micros,
                "spentTokens": limit.spent_tokens,
                "reservedUsd": _usd(limit.reserved_micros),
                "reservedTokens": limit.reserved_tokens,
                "requests": limit.requests,
                "refused": limit.refused,
                "percentUsed": round(percent, 2),
                "projectedUsd": _usd(outlook.projected_micros),
                "forecastMethod": outlook.method,
                "projectedExceedAt": _iso(outlook.exceeds_at) if outlook.exceeds_at else None,
                "periodStart": _iso(limit.window.start),
                "periodEnd": _iso(limit.window.end),
            }
        )
    assert governing is not None  # a budget has at least one limit
    percent, limit = governing
    breaker_state = services.book.breaker_state(state, now)
    exhausted = any(
        lim.refused > 0 or (lim.limit.period, lim.window.start, 100) in state.crossed
        for lim in state.limits.values()
    )
    crossed = sorted(
        (
            {"period": p.value, "windowStart": _iso(start), "threshold": t}
            for (p, start, t) in state.crossed
            if state.limits.get(p) is not None and state.limits[p].window.start == start
        ),
        key=lambda c: (c["period"], c["threshold"]),
    )
    breakdown: dict[str, Any] = {}
    dimensions = (("model", "models"), ("project", "projects"), ("user", "users"))
    for dimension, key in dimensions if with_breakdown else ():
        rows = await services.ledger.call(
            services.store.breakdown,
            budget.namespace,
            budget.scope,
            limit.window.start,
            limit.window.end,
            dimension,
            BREAKDOWN_TOP,
        )
        breakdown[key] = [
            {
                "name": r["name"],
                "spentUsd": _usd(r["micros"]),
                "tokens": r["tokens"],
                "requests": r["requests"],
            }
            for r in rows
        ]
    breaker = None
    if state.breaker is not None and breaker_state is not None:
        breaker = {
            "state": breaker_state.value,
            "tokensLastHour": state.breaker.tokens_last_hour(now),
            "openUntil": _iso(state.breaker.open_until) if state.breaker.open_until else None,
        }
    return {
        "namespace": budget.namespace,
        "name": budget.name,
        "state": budget_state_name(state, percent, breaker_state, exhausted),
        "action": budget.action.value,
        "governingPeriod": limit.limit.period.value,
        "percentUsed": round(percent, 2),
        "limits": limits,
        "thresholds": budget.thresholds,
        "thresholdsCrossed": crossed,
        "breakdown": breakdown if with_breakdown else None,
        "breaker": breaker,
        "spikes": [
            {"key": spike.key, **spike_json(spike)}
            for spike in services.spikes
            if spike.namespace == budget.namespace
        ],
        "configRevision": services.runtime.revision,
        "time": _iso(now),
    }


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


async def list_budgets(request: Request) -> Response:
    services: Services = request.app.state.services
    _check_token(services, request)
    await services.ledger.flush()
    now = datetime.now(UTC)
    with_breakdown = request.query_params.get("breakdown", "true") != "false"
    items = [
        await budget_usage(services, state, now, with_breakdown) for state in services.book.states()
    ]
    return _json({"items": items, "configRevision": services.runtime.revision})


async def get_budget(request: Request) -> Response:
    services: Services = request.app.state.services
    _check_token(services, request)
    key = f"{request.path_params['namespace']}/{request.path_params['name']}"
    state = services.book.get(key)
    if state is None:
        raise GatewayError(
            404,
            f"no TokenBudget {key} in the loaded config",
            type="not_found_error",
            code="budget_not_found",
        )
    await services.ledger.flush()
    return _json(await budget_usage(services, state, datetime.now(UTC)))


async def list_records(request: Request) -> Response:
    services: Services = request.app.state.services
    _check_token(services, request)
    raw_limit = request.query_params.get("limit", "100")
    limit = bounded_int(raw_limit, "limit", 1, MAX_RECORDS)
    namespace = request.query_params.get("namespace") or None
    await services.ledger.flush()
    rows = await services.ledger.call(services.store.recent, namespace, limit)
    for row in rows:
        row["costUsd"] = _usd(row["cost_micros"])
    return _json({"items": rows})
