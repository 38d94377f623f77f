"""Admin reports and exports (same admin token as admin.py).

GET /admin/v1/reports/spend?by=namespace|project|user|model|key&from=&to=&namespace=&top=
GET /admin/v1/reports/daily?from=&to=&namespace=
GET /admin/v1/export?format=csv|json&from=&to=&namespace=
GET /admin/v1/reports/anomalies?from=&to=&namespace=&thresholdPercent=&minUsd=

`from` and `to` are dates (YYYY-MM-DD, UTC, `to` exclusive) or RFC 3339 times; the default
is the last 30 days. Money is in USD decimal strings.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llmbudget_gateway.admin import _check_token, _json, _usd, spike_json
from llmbudget_gateway.anomalies import Spike, find_spikes
from llmbudget_gateway.contract.money import usd_to_micros
from llmbudget_gateway.errors import bad_request, bounded_int
from llmbudget_gateway.ledger import reports
from llmbudget_gateway.ledger.records import COLUMNS
from llmbudget_gateway.services import Services

MAX_TOP = 1000
MAX_SPIKE_PERCENT = 1_000_000
MAX_SPIKE_FLOOR_USD = 1_000_000_000
EARLIEST = datetime(1970, 1, 31, tzinfo=UTC)  # room for the 30-day default before `to`
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MICRO = Decimal("0.000001")


def _when(text: str | None, default: datetime, param: str) -> datetime:
    if not text:
        return default
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            f"'{param}' must be a date (YYYY-MM-DD) or an RFC 3339 time", param=param
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not EARLIEST <= moment <= LATEST:
        raise bad_request(
            f"'{param}' must be between {EARLIEST.date()} and {LATEST.date()}", param=param
        )
    return moment


def _range(request: Request) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    end = _when(request.query_params.get("to"), today, "to")
    start = _when(request.query_params.get("from"), end - timedelta(days=30), "from")
    if start >= end:
        raise bad_request("'from' must be before 'to'", param="from")
    return start, end


def _money(micros: int, requests: int) -> dict[str, str]:
    average = (Decimal(micros) / requests / 1_000_000) if requests else Decimal(0)
    per_thousand = average * 1000
    return {
        "avgCostUsd": str(average.quantize(MICRO, ROUND_HALF_UP)),
        "costPer1kRequestsUsd": str(per_thousand.quantize(MICRO, ROUND_HALF_UP)),
    }


async def spend(request: Request) -> Response:
    services: Services = request.app.state.services
    _check_token(services, request)
    by = request.query_params.get("by", "namespace")
    if by not in reports.GROUPS:
        raise bad_request(f"'by' must be one of {', '.join(reports.GROUPS)}", param="by")
    top_text = request.query_params.get("top", "100")
    top = bounded_int(top_text, "top", 1, MAX_TOP)
    start, end = _range(request)
    namespace = request.query_params.get("namespace") or None
    await services.ledger.flush()
    rows = await services.ledger.call(
        reports.spend_by, services.store.db, by, start, end, namespace, top
    )
    items = [
        {
            "name": r["name"],
            "requests": r["requests"],
            "tokens": r["tokens"],
            "spentUsd": _usd(r["micros"]),
            "maxCostUsd": _usd(r["maxMicros"]),
            **_money(r["micros"], r["requests"]),
        }
        for r in rows
    ]
    total_micros = sum(r["micros"] for r in rows)
    total_requests = sum(r["requests"] for r in rows)
    return _json(
        {
            "by": by,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "items": items,
            "totals": {
                "requests": total_requests,
                "spentUsd": _usd(total_micros),
                "tokens": sum(r["tokens"] for r in rows),
                **_money(total_micros, total_requests),
            },
        }
    )


async def daily_trend(request: Request) -> Response:
    services: Services = request.app.state.services
    _check_token(services, request)
    start, end = _range(request)
    namespace = request.query_params.get("namespace") or None
    await services.ledger.flush()
    rows = await services.ledger.call(reports.daily, services.store.db, start, end, namespace)
    return _json(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "items": [
                {
                    "date": r["date"],
                    "requests": r["requests"],
                    "tokens": r["tokens"],
                    "spentUsd": _usd(r["micros"]),
                }
                for r in rows
            ],
        }
    )


async def spikes_between(
    services: Services,
    start: datetime,
    end: datetime,
    namespace: str | None,
    percent: int,
    min_micros: int,
) -> list[Spike]:
    """Spikes of the whole UTC days from `start` to `end`, each compared with the day before."""
    await services.ledger.flush()
    daily = await services.ledger.call(
        reports.daily_by_scope,
        services.store.db,
        start - timedelta(days=1),  # the day before the first, to compare it
        end,
        namespace,
    )
    first, last = reports.day_range(start, end)
    days = [first.date() + timedelta(days=i) for i in range((last - first).days)]
    return find_spikes(daily, days, percent, min_micros)


async def todays_spikes(services: Services) -> list[Spike]:
    """Spikes of today so far (every namespace), as the periodic check computes them."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    settings = services.settings
    return await spikes_between(
        services,
        today,
        today + timedelta(days=1),
        None,
        settings.spike_percent,
        settings.spike_min_micros,
    )


async def anomalies(request: Request) -> Response:
    services: Services = request.app.state.services
    _check_token(services, request)
    start, end = _range(request)
    namespace = request.query_params.get("namespace") or None
    percent_text = request.query_params.get(
        "thresholdPercent", str(services.settings.spike_percent)
    )
    percent = bounded_int(percent_text, "thresholdPercent", 1, MAX_SPIKE_PERCENT)
    floor_text = request.query_params.get("minUsd")
    min_micros = services.settings.spike_min_micros
    if floor_text is not None:
        try:
            floor = Decimal(floor_text)
            if not floor.is_finite() or not 0 <= floor <= MAX_SPIKE_FLOOR_USD:
                raise ValueError(floor_text)
            min_micros = usd_to_micros(floor)
        except (InvalidOperation, ValueError):
            raise bad_request(
                f"'minUsd' must be a decimal amount from 0 to {MAX_SPIKE_FLOOR_USD}",
                param="minUsd",
            ) from None
    spikes = await spikes_between(services, start, end, namespace, percent, min_micros)
    return _json(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "thresholdPercent": percent,
            "minUsd": _usd(min_micros),
            "items": [{"namespace": spike.namespace, **spike_json(spike)} for spike in spikes],
        }
    )


async def export(request: Request) -> Response:
    services: Services = request.app.state.services
    _check_token(services, request)
    form = request.query_params.get("format", "csv")
    if form not in ("csv", "json"):
        raise bad_request("'format' must be csv or json", param="format")
    start, end = _range(request)
    namespace = request.query_params.get("namespace") or None
    await services.ledger.flush()
    db = services.store.db

    async def rows() -> AsyncIterator[dict[str, Any]]:
        """Page by page on the ledger thread: an export never sits whole in memory."""
        cursor: reports.Cursor | None = (-1, "")
        while cursor is not None:
            page, cursor = await services.ledger.call(
                reports.export_page, db, start, end, namespace, cursor
            )
            for row in page:
                yield row

    async def lines() -> AsyncIterator[bytes]:
        if form == "json":
            yield b"["
            first = True
            async for row in rows():
                yield (b"" if first else b",") + orjson.dumps(row)
                first = False
            yield b"]"
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        async for row in rows():
            writer.writerow([";".join(row[c]) if c == "budgets" else row[c] for c in COLUMNS])
            if buffer.tell() > 64_000:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    name = f"llmbudget-ledger-{start.date()}-{end.date()}.{form}"
    media = "text/csv" if form == "csv" else "application/json"
    return StreamingResponse(
        lines(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
