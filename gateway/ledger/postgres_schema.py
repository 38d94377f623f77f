"""The PostgreSQL ledger's schema, as numbered migrations applied once, in order.

Several gateway replicas may start together: migrations run in one transaction under an
advisory lock, and each is recorded in `llmbudget_schema`, so every replica sees the same
schema and none applies a step twice. A database newer than this gateway is refused.
"""

from __future__ import annotations

from typing import Any

import psycopg

MIGRATION_LOCK = 0x6C6C6D62  # "llmb": pg_advisory_xact_lock key for migrations

V1 = """
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    namespace TEXT NOT NULL,
    key_name TEXT NOT NULL,
    budgets TEXT NOT NULL,
    project TEXT, user_id TEXT, session_id TEXT, environment TEXT, cost_center TEXT,
    endpoint TEXT NOT NULL,
    requested_model TEXT NOT NULL, routed_model TEXT NOT NULL, route TEXT NOT NULL,
    backend TEXT NOT NULL, provider TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL, cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL, ttft_ms DOUBLE PRECISION,
    status INTEGER NOT NULL, error_code TEXT,
    stream SMALLINT NOT NULL, estimated SMALLINT NOT NULL, unpriced SMALLINT NOT NULL,
    route_decision TEXT
);
CREATE INDEX requests_namespace_ts ON requests (namespace, ts_ms);
CREATE INDEX requests_ts ON requests (ts_ms, request_id);
CREATE TABLE crossings (
    budget TEXT NOT NULL, period TEXT NOT NULL, window_start_ms BIGINT NOT NULL,
    threshold INTEGER NOT NULL, crossed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (budget, period, window_start_ms, threshold)
);
CREATE TABLE rollup_hourly (
    hour_ms BIGINT NOT NULL, namespace TEXT NOT NULL, project TEXT NOT NULL,
    user_id TEXT NOT NULL, model TEXT NOT NULL, key_name TEXT NOT NULL,
    requests BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL,
    max_cost_micros BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, namespace, project, user_id, model, key_name)
);
CREATE TABLE rollup_daily (
    dim TEXT NOT NULL, day_ms BIGINT NOT NULL, namespace TEXT NOT NULL, value TEXT NOT NULL,
    requests BIGINT NOT NULL, tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL,
    max_cost_micros BIGINT NOT NULL,
    PRIMARY KEY (dim, day_ms, namespace, value)
);
-- Shared enforcement: every replica reserves against these rows, so budgets stay exact.
CREATE TABLE budget_windows (
    budget TEXT NOT NULL, period TEXT NOT NULL, window_start_ms BIGINT NOT NULL,
    spent_micros BIGINT NOT NULL DEFAULT 0, spent_tokens BIGINT NOT NULL DEFAULT 0,
    reserved_micros BIGINT NOT NULL DEFAULT 0, reserved_tokens BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (budget, period, window_start_ms)
);
-- A reservation held by a replica until its ledger row settles it, or until it expires
-- (the replica died): the expiry sweeper gives the amount back.
CREATE TABLE reservations (
    request_id TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL,
    micros BIGINT NOT NULL, tokens BIGINT NOT NULL,
    budgets TEXT[] NOT NULL, periods TEXT[] NOT NULL, starts BIGINT[] NOT NULL
);
CREATE INDEX reservations_expires ON reservations (expires_ms);

-- Reserve `micros`/`tokens` on every window, or on none: returns 0 when reserved, else the
-- 1-based index of the first window whose limit it would exceed. Windows come sorted, and
-- rows are locked in that order, so concurrent callers cannot deadlock.
CREATE FUNCTION llmbudget_reserve(
    p_id TEXT, p_budgets TEXT[], p_periods TEXT[], p_starts BIGINT[],
    p_limit_micros BIGINT[], p_limit_tokens BIGINT[],
    p_micros BIGINT, p_tokens BIGINT, p_expires_ms BIGINT
) RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    i INTEGER;
    w budget_windows%ROWTYPE;
BEGIN
    INSERT INTO budget_windows (budget, period, window_start_ms)
        SELECT * FROM unnest(p_budgets, p_periods, p_starts)
        ON CONFLICT DO NOTHING;
    FOR i IN 1 .. coalesce(array_length(p_budgets, 1), 0) LOOP
        SELECT * INTO w FROM budget_windows
            WHERE budget = p_budgets[i] AND period = p_periods[i]
              AND window_start_ms = p_starts[i]
            FOR UPDATE;
        IF (p_limit_micros[i] IS NOT NULL
                AND w.spent_micros + w.reserved_micros + p_micros > p_limit_micros[i])
           OR (p_limit_tokens[i] IS NOT NULL
                AND w.spent_tokens + w.reserved_tokens + p_tokens > p_limit_tokens[i]) THEN
            RETURN i;
        END IF;
    END LOOP;
    UPDATE budget_windows b
        SET reserved_micros = b.reserved_micros + p_micros,
            reserved_tokens = b.reserved_tokens + p_tokens
        FROM unnest(p_budgets, p_periods, p_starts) AS u(budget, period, start)
        WHERE b.budget = u.budget AND b.period = u.period AND b.window_start_ms = u.start;
    INSERT INTO reservations
        VALUES (p_id, p_expires_ms, p_micros, p_tokens, p_budgets, p_periods, p_starts)
        ON CONFLICT (request_id) DO NOTHING;
    RETURN 0;
END $$;

-- Give back reservations whose replica never settled them; returns how many.
CREATE FUNCTION llmbudget_expire(p_now_ms BIGINT) RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    expired INTEGER;
BEGIN
    WITH gone AS (
        DELETE FROM reservations WHERE expires_ms < p_now_ms
        RETURNING micros, tokens, budgets, periods, starts
    ), amounts AS (
        SELECT u.budget, u.period, u.start, SUM(g.micros) AS micros, SUM(g.tokens) AS tokens
        FROM gone g, unnest(g.budgets, g.periods, g.starts) AS u(budget, period, start)
        GROUP BY u.budget, u.period, u.start
    )
    UPDATE budget_windows b
        SET reserved_micros = b.reserved_micros - a.micros,
            reserved_tokens = b.reserved_tokens - a.tokens
        FROM amounts a
        WHERE b.budget = a.budget AND b.period = a.period AND b.window_start_ms = a.start;
    GET DIAGNOSTICS expired = ROW_COUNT;
    RETURN expired;
END $$;
"""

MIGRATIONS: tuple[str, ...] = (V1,)


def migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Bring the schema up to date; returns the version. Safe to call from many replicas."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS llmbudget_schema "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM llmbudget_schema").fetchone()
        current = int(row[0]) if row else 0
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"the ledger database has schema version {current}; this gateway knows "
                f"{len(MIGRATIONS)}: upgrade the gateway"
            )
        for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute(sql.encode())
            conn.execute("INSERT INTO llmbudget_schema (version) VALUES (%s)", (version,))
    return len(MIGRATIONS)
