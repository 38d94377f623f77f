"""The SQLite ledger: batched writes, idempotent retries, window sums, rollups, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmbudget_gateway.budgets import Crossing
from llmbudget_gateway.contract.specs import Period
from llmbudget_gateway.ledger.records import LedgerRecord
from llmbudget_gateway.ledger.rollups import to_ms
from llmbudget_gateway.ledger.sqlite import SqliteLedger

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def record(i: int, at: datetime = T0, **extra: object) -> LedgerRecord:
    values: dict[str, object] = dict(
        request_id=f"r{i}",
        ts_ms=to_ms(at),
        namespace="team",
        key_name="default",
        budgets=["team/b"],
        requested_model="gpt-4.1",
        routed_model="gpt-4.1",
        prompt_tokens=10,
        completion_tokens=5,
        cost_micros=100,
    )
    values.update(extra)
    return LedgerRecord(**values)  # type: ignore[arg-type]


def test_write_sum_and_scope(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    ledger.write([record(1, project="apollo"), record(2), record(3, namespace="other")], [])
    assert ledger.window_spend("team", {}, T0, T0 + timedelta(hours=1)) == (200, 30, 2)
    assert ledger.window_spend("team", {"project": "apollo"}, T0, T0 + timedelta(hours=1)) == (
        100,
        15,
        1,
    )
    assert ledger.window_spend("team", {}, T0 + timedelta(seconds=1), T0 + timedelta(hours=1)) == (
        0,
        0,
        0,
    )


def test_retried_batches_do_not_double_count(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    batch = [record(1), record(2)]
    ledger.write(batch, [])
    ledger.write([*batch, record(3)], [])  # a retry after an ambiguous failure, plus one new
    assert ledger.count() == 3 and ledger.total_cost_micros() == 300
    rollup = ledger._db.execute("SELECT SUM(requests), SUM(cost_micros) FROM rollup_hourly")
    assert rollup.fetchone() == (3, 300)
    for dim in ("namespace", "project", "user", "model", "key"):
        daily = ledger._db.execute(
            "SELECT SUM(requests), SUM(cost_micros) FROM rollup_daily "
            "WHERE dim = ? AND namespace != '*'",
            (dim,),
        )
        assert daily.fetchone() == (3, 300), dim
        if dim != "namespace":
            everywhere = ledger._db.execute(
                "SELECT SUM(requests) FROM rollup_daily WHERE dim = ? AND namespace = '*'",
                (dim,),
            )
            assert everywhere.fetchone() == (3,), dim


def test_crossings_are_stored_once(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    crossing = Crossing("team/b", Period.DAILY, T0.replace(hour=0), 50, T0)
    ledger.write([], [crossing])
    ledger.write([], [crossing])
    assert ledger.crossings(T0 - timedelta(days=1)) == [
        ("team/b", Period.DAILY, T0.replace(hour=0), 50, T0)
    ]


def test_breakdown_and_recent(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    ledger.write(
        [
            record(1, user_id="ada", cost_micros=500),
            record(2, user_id="bob"),
            record(3, user_id="ada"),
        ],
        [],
    )
    users = ledger.breakdown("team", {}, T0, T0 + timedelta(hours=1), "user")
    assert [(u["name"], u["micros"], u["requests"]) for u in users] == [
        ("ada", 600, 2),
        ("bob", 100, 1),
    ]
    recent = ledger.recent("team", 2)
    assert len(recent) == 2 and recent[0]["budgets"] == ["team/b"]


def test_prune_keeps_recent_rows(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    ledger.write([record(1, at=T0 - timedelta(days=100)), record(2)], [])
    assert ledger.prune(T0 - timedelta(days=90)) == 1
    assert ledger.count() == 1


def test_reopening_keeps_rows_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SqliteLedger(path)
    ledger.write([record(1)], [])
    ledger.close()
    again = SqliteLedger(path)
    assert again.count() == 1
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_row_values_follow_the_column_order() -> None:
    import dataclasses

    from llmbudget_gateway.ledger.records import COLUMNS

    r = record(1, project="p", user_id="u", ttft_ms=1.5, route_decision="d")
    fields = tuple(f.name for f in dataclasses.fields(r))
    assert fields == (*COLUMNS, "windows")  # windows: settlement data, not a column
    values = (*r.values_before_budgets(), r.budgets, *r.values_after_budgets())
    assert values == dataclasses.astuple(r)[: len(COLUMNS)]
