"""Spend spikes (pure rule) and, on a real gateway, in the report, the metric and the usage
the operator reads; the forecast fields of the usage report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx

from llmbudget_gateway.anomalies import Spike, find_spikes
from llmbudget_gateway.ledger.sqlite import SqliteLedger
from tests.gateway.conftest import GatewayFactory
from tests.gateway.harness import ADMIN_TOKEN
from tests.gateway.ledger.test_sqlite import record

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
D1, D2, D3 = date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 23)


def test_a_spike_is_more_than_the_threshold_above_the_day_before() -> None:
    daily = {
        ("team", None): {D1: 1_000, D2: 2_000, D3: 2_001},
        ("team", "apollo"): {D2: 300, D3: 1_000},
        ("ml", None): {D2: 5_000},  # first day of spend: nothing to compare with
    }
    spikes = find_spikes(daily, [D2, D3], threshold_percent=100, min_micros=500)
    # team D2: +100 % is not *above* 100 %; D3: +0.05 %; apollo D3: +233 % and >= the floor
    assert spikes == [Spike(D3, "team", "apollo", 1_000, 300)]
    assert spikes[0].change_percent == 233
    assert find_spikes(daily, [D2, D3], threshold_percent=99, min_micros=500)[0] == Spike(
        D2, "team", None, 2_000, 1_000
    )
    assert find_spikes(daily, [D3], threshold_percent=100, min_micros=1_001) == []  # floor


def test_spikes_and_forecasts_through_the_gateway(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Monthly, amount: "0.03"}
          - {period: Daily, amount: "1"}
        """,
        start=False,
        spike_min_micros=1_000,
        spike_interval=0.2,
    )
    now = datetime.now(UTC)
    ledger = SqliteLedger(gateway.state_dir / "ledger.sqlite3")
    rows = [record(i, now - timedelta(days=1), cost_micros=1_000) for i in range(2)]
    rows += [record(10 + i, now, cost_micros=1_000) for i in range(10)]
    rows += [
        record(20, now - timedelta(days=1), project="apollo", cost_micros=2_000),
        record(21, now, project="apollo", cost_micros=2_000),  # +0 %: no spike
    ]  # the namespace: 4,000 micros yesterday, 12,000 today: +200 %
    ledger.write(rows, [])
    ledger.close()
    gateway.start()

    report = httpx.get(
        f"{gateway.root}/admin/v1/reports/anomalies",
        params={"from": (now - timedelta(days=2)).date().isoformat()},
        headers=AUTH,
    ).json()
    today = now.date().isoformat()
    assert [
        (i["date"], i["namespace"], i["project"], i["changePercent"]) for i in report["items"]
    ] == [(today, "team", None, 200)]
    assert (
        report["items"][0]["spentUsd"] == "0.012" and report["items"][0]["previousUsd"] == "0.004"
    )
    strict = httpx.get(
        f"{gateway.root}/admin/v1/reports/anomalies",
        params={"thresholdPercent": "200"},
        headers=AUTH,
    ).json()
    assert strict["items"] == []
    bad = httpx.get(
        f"{gateway.root}/admin/v1/reports/anomalies", params={"minUsd": "lots"}, headers=AUTH
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "minUsd"

    def usage() -> dict[str, object]:
        data: dict[str, object] = httpx.get(
            f"{gateway.root}/admin/v1/budgets/team/team", headers=AUTH
        ).json()
        return data

    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not usage()["spikes"]:
        assert datetime.now(UTC) < deadline, "the spike check did not run"
    body = usage()
    spikes = body["spikes"]
    assert isinstance(spikes, list) and spikes[0]["key"] == f"{today}/"
    metrics = httpx.get(gateway.metrics_url).text
    assert 'llmbudget_spend_spike{namespace="team",project=""} 1.0' in metrics
    limits = body["limits"]
    assert isinstance(limits, list)
    monthly, daily = limits
    # yesterday's 4,000 micros is the only complete day: 4,000 micros a day from now on
    assert monthly["forecastMethod"] == "weighted-daily-average"
    assert daily["forecastMethod"] == "linear" and daily["projectedExceedAt"] is None
    end = datetime.fromisoformat(monthly["periodEnd"].replace("Z", "+00:00"))
    days_left = (end - datetime.now(UTC)).total_seconds() / 86_400
    expected = monthly["spentMicros"] + 4_000 * days_left
    assert abs(float(monthly["projectedUsd"]) * 1e6 - expected) < 50
    assert (monthly["projectedExceedAt"] is not None) == (expected > 30_000)
