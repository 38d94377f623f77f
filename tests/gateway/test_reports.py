"""Spend reports, daily trend and exports through the admin API."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from llmbudget_gateway.ledger import reports
from llmbudget_gateway.ledger.rollups import to_ms
from llmbudget_gateway.ledger.sqlite import SqliteLedger
from tests.gateway.conftest import OTHER_KEY, GatewayFactory
from tests.gateway.harness import ADMIN_TOKEN
from tests.gateway.ledger.test_sqlite import record
from tests.gateway.test_proxy_openai import MESSAGES, client

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_reports_from_rollups(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    ledger.write(
        [
            record(1, user_id="ada", cost_micros=500),
            record(2, user_id="bob", cost_micros=100),
            record(3, user_id="ada", cost_micros=300, ts_ms=to_ms(T0 + timedelta(days=1))),
        ],
        [],
    )
    rows = reports.spend_by(
        ledger.db, "user", T0 - timedelta(days=1), T0 + timedelta(days=2), None, 10
    )
    assert [(r["name"], r["requests"], r["micros"], r["maxMicros"]) for r in rows] == [
        ("ada", 2, 800, 500),
        ("bob", 1, 100, 100),
    ]
    days = reports.daily(ledger.db, T0 - timedelta(days=1), T0 + timedelta(days=2), "team")
    assert [(d["date"], d["micros"]) for d in days] == [("2026-11-23", 600), ("2026-11-24", 300)]
    exported = list(reports.export_rows(ledger.db, T0, T0 + timedelta(days=2), None, page=2))
    assert [r["request_id"] for r in exported] == ["r1", "r2", "r3"]  # paged, in time order


def test_admin_reports_and_export(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    for project in ("apollo", "apollo", "zeus"):
        client(gateway, **{"X-Project": project}).chat.completions.create(
            model="gpt-4.1", messages=MESSAGES
        )
    client(gateway, key=OTHER_KEY).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    spend = httpx.get(f"{gateway.root}/admin/v1/reports/spend?by=namespace", headers=AUTH)
    assert spend.status_code == 200, spend.text
    body = spend.json()
    assert [(i["name"], i["requests"], i["spentUsd"]) for i in body["items"]] == [
        ("team", 3, "0.00033"),
        ("other", 1, "0.00011"),
    ]
    assert body["totals"] == {
        "requests": 4,
        "spentUsd": "0.00044",
        "tokens": 76,
        "avgCostUsd": "0.000110",
        "costPer1kRequestsUsd": "0.110000",
    }
    projects = httpx.get(
        f"{gateway.root}/admin/v1/reports/spend?by=project&namespace=team", headers=AUTH
    ).json()["items"]
    assert [(p["name"], p["requests"]) for p in projects] == [("apollo", 2), ("zeus", 1)]
    daily = httpx.get(f"{gateway.root}/admin/v1/reports/daily", headers=AUTH).json()["items"]
    assert len(daily) == 1 and daily[0]["requests"] == 4
    exported = httpx.get(f"{gateway.root}/admin/v1/export?format=csv&namespace=team", headers=AUTH)
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(table) == 3 and {r["project"] for r in table} == {"apollo", "zeus"}
    as_json = httpx.get(f"{gateway.root}/admin/v1/export?format=json", headers=AUTH).json()
    assert len(as_json) == 4 and sum(r["cost_micros"] for r in as_json) == 440
    for bad in ("by=team", "top=0", "from=yesterday", "format=xml"):
        path = "export" if bad.startswith("format") else "reports/spend"
        response = httpx.get(f"{gateway.root}/admin/v1/{path}?{bad}", headers=AUTH)
        assert response.status_code == 400 and response.json()["error"]["param"], bad
    assert httpx.get(f"{gateway.root}/admin/v1/export").status_code == 401


def test_dates_out_of_range_are_a_400_not_a_crash(make_gateway: GatewayFactory) -> None:
    # found by the fuzz suite: 'to' near year 1 made the 30-day default overflow (a 500)
    gateway = make_gateway()
    for params in ({"to": "0001-01-01"}, {"from": "9999-12-31"}, {"to": "9999-12-31T23:59:59"}):
        response = httpx.get(f"{gateway.root}/admin/v1/reports/daily", params=params, headers=AUTH)
        assert response.status_code == 400, (params, response.text)
        assert "must be between 1970-01-31 and 9000-01-01" in response.json()["error"]["message"]


def test_query_numbers_are_bounded_ascii_integers(make_gateway: GatewayFactory) -> None:
    # found by the fuzz suite: a huge thresholdPercent overflowed the JSON encoder (a 500);
    # "²" passes str.isdigit() but not int()
    gateway = make_gateway()
    for path, params in (
        ("reports/anomalies", {"thresholdPercent": "9" * 30}),
        ("reports/anomalies", {"thresholdPercent": "²"}),
        ("reports/anomalies", {"minUsd": "1e400"}),
        ("reports/anomalies", {"minUsd": "-1"}),
        ("reports/anomalies", {"minUsd": "NaN"}),
        ("reports/spend", {"top": "²"}),
        ("records", {"limit": "0"}),
    ):
        response = httpx.get(f"{gateway.root}/admin/v1/{path}", params=params, headers=AUTH)
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["error"]["param"] == next(iter(params))
