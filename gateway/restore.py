"""Restoring spend from the ledger: at start-up, and for budgets a reload adds.

The in-memory budget book is the fast path; the ledger is the record. When a budget appears
(process start, or a new TokenBudget in a reload) its current windows' spend and the threshold
crossings already recorded are read back from the ledger before the config is swapped in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmbudget_gateway.contract.config import GatewayConfig
from llmbudget_gateway.periods import window_at
from llmbudget_gateway.services import Services
from llmbudget_gateway.shared_budgets import SpendRow

LONGEST_PERIOD = timedelta(days=31)


async def apply_with_restore(services: Services, config: GatewayConfig) -> None:
    now = datetime.now(UTC)
    known = {state.budget.key for state in services.book.states()}
    fresh = [budget for budget in config.budgets if budget.key not in known]
    await services.ledger.flush()
    spend = []
    for budget in fresh:
        for limit in budget.limits:
            window = window_at(limit.period, budget.timezone, now)
            micros, tokens, requests = await services.ledger.call(
                services.store.window_spend,
                budget.namespace,
                budget.scope,
                window.start,
                window.end,
            )
            spend.append((budget.key, limit.period, window.start, micros, tokens, requests))
    crossings = []
    if fresh:
        crossings = await services.ledger.call(services.store.crossings, now - LONGEST_PERIOD)
    if services.shared is not None:  # windows new to the database start from the rows
        await services.shared.seed([SpendRow(*entry) for entry in spend])
    services.apply_config(config, now)  # synchronous from here: no request interleaves
    fresh_keys = {budget.key for budget in fresh}
    for key, period, start, micros, tokens, requests in spend:
        services.book.restore(key, period, start, micros, tokens, requests)
    for key, period, start, threshold, _ in crossings:
        if key in fresh_keys:
            services.book.mark_crossed(key, period, start, threshold)
    if services.shared is not None and fresh:
        await services.shared.sync(services.book, now)  # the spend of every replica
