"""Several gateway replicas sharing a PostgreSQL ledger: budgets stay exact across replicas.

Each replica is a full gateway (its own event loop, budget book and HTTP server) on loopback;
they share only the database, as pods of one Deployment would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest

from tests.gateway.conftest import GatewayFactory
from tests.gateway.harness import Gateway
from tests.gateway.test_concurrency_and_restart import _burst
from tests.gateway.test_proxy_openai import COST_MICROS, MESSAGES, client, records, usage_of
from tests.postgres import PostgresServer

WORST_MICROS = 858  # the reservation of one MESSAGES request with max_tokens=100 (see below)


@pytest.fixture
def replicas(make_gateway: GatewayFactory, tmp_path: Path, pg_dsn: str) -> Iterator[Any]:
    started: list[Gateway] = []

    def start(
        budget_spec: str, count: int = 3, dsn: str = pg_dsn, **settings: Any
    ) -> list[Gateway]:
        first = make_gateway(budget_spec=budget_spec, ledger_dsn=dsn, **settings)
        gateways = [first]
        for i in range(1, count):
            other = Gateway(
                first.manifests,
                tmp_path / f"state-{i}",
                settings_overrides={"ledger_dsn": dsn, **settings},
            )
            started.append(other.start())
            gateways.append(other)
        return gateways

    yield start
    for gateway in started:
        gateway.stop()


def window_row(dsn: str) -> tuple[int, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT spent_micros, spent_tokens, reserved_micros, reserved_tokens, requests "
            "FROM budget_windows WHERE budget = 'team/team'"
        ).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_three_replicas_with_200_concurrent_requests_each_admit_exactly_k(
    replicas: Any, pg_dsn: str
) -> None:
    # Room for exactly 50 reservations of 858 micros (29 prompt-bound tokens at $2/M plus 100
    # completion tokens at $8/M). Alone, each replica would admit 50: 150 in all.
    gateways = replicas(
        """\
        limits:
          - {period: Daily, amount: "0.0429"}
        """
    )

    async def burst_all() -> list[list[int]]:
        return await asyncio.gather(*(_burst(g.url, 200, 100, delay_ms=4000) for g in gateways))

    per_replica = asyncio.run(burst_all())
    admitted = sum(statuses.count(200) for statuses in per_replica)
    refused = sum(statuses.count(429) for statuses in per_replica)
    assert (admitted, refused) == (50, 550), per_replica
    assert all(statuses.count(200) > 0 for statuses in per_replica)  # all three took part
    wait_for(lambda: window_row(pg_dsn) == (50 * COST_MICROS, 50 * 19, 0, 0, 50))
    with psycopg.connect(pg_dsn) as conn:
        by_status: dict[int, int] = dict(
            conn.execute("SELECT status, COUNT(*) FROM requests GROUP BY status").fetchall()
        )
        ledger_total = conn.execute("SELECT SUM(cost_micros) FROM requests").fetchone()
    assert by_status == {200: 50, 429: 550}  # every request has its row, once
    assert ledger_total == (50 * COST_MICROS,)
    wait_for(lambda: all(usage_of(g)["limits"][0]["spentMicros"] == 50 * COST_MICROS
                         for g in gateways))  # fmt: skip


def test_a_refusal_from_the_shared_ledger_names_the_budget_and_reset(
    replicas: Any, pg_dsn: str
) -> None:
    a, b = replicas(
        """\
        limits:
          - {period: Daily, amount: "0.0009"}
        """,
        count=2,
    )
    client(a).chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=100)
    wait_for(lambda: window_row(pg_dsn)[0] == COST_MICROS)
    # b has not synced yet or has: either way the database refuses the 858-micro reservation
    with pytest.raises(openai.RateLimitError) as refused:
        client(b).chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=100)
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "budget_exceeded"
    assert "TokenBudget team/team would exceed its Daily limit" in error["message"]
    assert "resets at" in error["message"]
    assert refused.value.response.headers["retry-after"].isdigit()


@pytest.mark.parametrize("fail_open", [False, True])
def test_database_outage_fails_closed_or_open_and_loses_no_row(
    replicas: Any, tmp_path: Path, fail_open: bool
) -> None:
    server = PostgresServer()  # its own server: this test stops it
    server.start()
    try:
        dsn = server.create_database("outage")
        (gateway,) = replicas(
            """\
            limits:
              - {period: Monthly, amount: "10"}
            """,
            count=1,
            dsn=dsn,
            ledger_fail_open=fail_open,
        )
        client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        server.pause()
        sdk = client(gateway)
        if fail_open:
            for _ in range(3):
                sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        else:
            with pytest.raises(openai.InternalServerError) as unavailable:
                sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
            assert unavailable.value.status_code == 503
            body = unavailable.value.body
            assert isinstance(body, dict) and body["code"] == "ledger_unavailable"
            assert "postgres" not in str(body).lower()  # no DSN or host in the message
        server.resume()
        billed = 4 if fail_open else 1
        wait_for(lambda: window_row(dsn)[0] == billed * COST_MICROS, timeout=20)
        assert window_row(dsn)[2:] == (0, 0, billed)  # nothing left reserved
        # the refused request's row may still be in the writer's retry when the window is
        # already right (its reservation was released, not billed): wait for it
        wait_for(lambda: gateway.services.ledger.depth == 0, timeout=20)
        rows = records(gateway)
        assert sum(r["cost_micros"] for r in rows) == billed * COST_MICROS
        statuses = sorted(r["status"] for r in rows)
        assert statuses == ([200] * 4 if fail_open else [200, 503])
        metrics = httpx.get(gateway.metrics_url).text
        assert "llmbudget_ledger_unavailable_total" in metrics
    finally:
        server.stop()


def test_a_replica_view_follows_the_spend_of_the_others(replicas: Any) -> None:
    a, b = replicas(
        """\
        limits:
          - {period: Monthly, amount: "10"}
        """,
        count=2,
    )
    for _ in range(3):
        client(a).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    wait_for(lambda: usage_of(b)["limits"][0]["spentMicros"] == 3 * COST_MICROS)
    assert usage_of(b)["limits"][0]["requests"] == 3
