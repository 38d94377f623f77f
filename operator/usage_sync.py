"""Spend into status, and alerts: one loop for every TokenBudget.

Every `sync_interval` seconds the loop reads the usage of all budgets from the gateway admin
API in one call (one call for 1,000 budgets, not 1,000 timers), patches each TokenBudget's
status where it changed (and refreshes lastSyncTime at least every 5 intervals), and sends
each threshold crossing the gateway recorded to the budget's webhooks, once per threshold per
period. The thresholds already alerted live in status.alerted, so a restarted operator never
resends; they are written after delivery. If the API server fails between the two, the
operator remembers what it delivered and only records it once the API server is back; only an
operator crash in that window can resend one alert (at-least-once, never lost).
Kubernetes Events: Normal for thresholds below 100 %, Warning for
Exceeded, for a breaker that opens and for a spend spike of the namespace (once per day and
project, remembered in status.spikesReported).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from llmbudget_operator.alerts import Alert, deliver, payload
from llmbudget_operator.kube import Kube
from llmbudget_operator.reconciler import decoded, now_iso
from llmbudget_operator.settings import OperatorSettings
from llmbudget_operator.status import (
    changed,
    current_alerted,
    pending_alerts,
    status_from_usage,
    with_alerted,
)

log = logging.getLogger("llmbudget.usage")
AlertKey = tuple[str, str, str, str, int]  # namespace, budget, period, period end, threshold


def alert_key(alert: Alert) -> AlertKey:
    return (alert.namespace, alert.budget, alert.period, alert.period_end, alert.threshold)


FORCE_REFRESH_INTERVALS = 5
BREAKDOWN_EVERY = 6
PATCH_CONCURRENCY = 16


@dataclass
class UsageSync:
    kube: Kube
    settings: OperatorSettings
    session: aiohttp.ClientSession
    in_flight: set[AlertKey] = field(default_factory=set)  # alerts a task is sending now
    # Alerts delivered (webhooks) or evented but not yet recorded in status.alerted: when the
    # API server fails in between, the next sync records them without sending them again.
    delivered: set[AlertKey] = field(default_factory=set)
    evented: set[AlertKey] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    last_error: str | None = None
    syncs: int = 0

    async def run_forever(self) -> None:
        """At a fixed rate: a slow sync delays the next one, it does not add an interval."""
        loop = asyncio.get_running_loop()
        next_start = loop.time()
        while True:
            try:
                await self.sync_once()
                self.last_error = None
            except Exception as error:
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("usage sync failed: %s", self.last_error)
            next_start = max(next_start + self.settings.sync_interval, loop.time())
            await asyncio.sleep(next_start - loop.time())

    async def fetch_usage(self) -> dict[tuple[str, str], dict[str, Any]]:
        # Breakdowns (top models, projects, users) cost three ledger queries per budget:
        # refreshed every BREAKDOWN_EVERY syncs, the totals every sync.
        breakdown = "true" if self.syncs % BREAKDOWN_EVERY == 0 else "false"
        url = (
            f"{self.settings.gateway_admin_url.rstrip('/')}/admin/v1/budgets?breakdown={breakdown}"
        )
        headers = {"Authorization": f"Bearer {self.settings.admin_token}"}
        async with self.session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            response.raise_for_status()
            data = await response.json()
        return {(item["namespace"], item["name"]): item for item in data["items"]}

    async def sync_once(self) -> None:
        usage = await self.fetch_usage()
        budgets = await self.kube.list_custom("tokenbudgets", self.settings.namespaces)
        now = datetime.now(UTC)
        limit = asyncio.Semaphore(PATCH_CONCURRENCY)

        async def one(budget: dict[str, Any], item: dict[str, Any]) -> None:
            async with limit:
                await self._sync_budget(budget, item, now)

        await asyncio.gather(
            *(
                one(budget, item)
                for budget in budgets
                if (
                    item := usage.get((budget["metadata"]["namespace"], budget["metadata"]["name"]))
                )
                is not None
            )
        )
        self.syncs += 1

    async def _sync_budget(
        self, budget: dict[str, Any], usage: dict[str, Any], now: datetime
    ) -> None:
        metadata = budget["metadata"]
        status = budget.get("status") or {}
        new = status_from_usage(usage)
        alerted = current_alerted(usage, status)
        last_sync = status.get("lastSyncTime")
        stale = last_sync is None or (
            now - datetime.fromisoformat(last_sync.replace("Z", "+00:00"))
            >= timedelta(seconds=FORCE_REFRESH_INTERVALS * self.settings.sync_interval)
        )
        if changed(status, new) or alerted != (status.get("alerted") or []) or stale:
            await self.kube.patch_status(
                "tokenbudgets",
                metadata["namespace"],
                metadata["name"],
                {**new, "alerted": alerted, "lastSyncTime": now_iso()},
            )
        await self._report_spikes(budget, usage, status)
        if new["state"] == "BreakerOpen" and status.get("state") != "BreakerOpen":
            await self.kube.create_event(
                budget,
                "Warning",
                "BreakerOpen",
                f"token circuit breaker opened: {usage['breaker']['tokensLastHour']} tokens in "
                "the last hour; requests are refused until the cooldown ends",
                now_iso(),
            )
        alerts = [a for a in pending_alerts(usage, alerted) if alert_key(a) not in self.in_flight]
        if alerts:
            self.in_flight.update(alert_key(alert) for alert in alerts)
            task = asyncio.create_task(self._alert(budget, usage, alerts))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _report_spikes(
        self, budget: dict[str, Any], usage: dict[str, Any], status: dict[str, Any]
    ) -> None:
        """One Warning Event per spend spike of the budget's namespace (per day and project);
        the spikes reported are kept in status so a restart does not repeat them."""
        metadata = budget["metadata"]
        spikes = usage.get("spikes") or []
        reported = status.get("spikesReported") or []
        current = sorted({spike["key"] for spike in spikes})
        for spike in spikes:
            if spike["key"] in reported:
                continue
            scope = f"project {spike['project']} of " if spike.get("project") else ""
            await self.kube.create_event(
                budget,
                "Warning",
                "SpendSpike",
                f"spend of {scope}namespace {metadata['namespace']} on {spike['date']}: "
                f"{spike['spentUsd']} USD, {spike['changePercent']}% above the day before "
                f"({spike['previousUsd']} USD)",
                now_iso(),
            )
        if current != sorted(reported):
            await self.kube.patch_status(
                "tokenbudgets",
                metadata["namespace"],
                metadata["name"],
                {"spikesReported": current},
            )

    async def _alert(
        self, budget: dict[str, Any], usage: dict[str, Any], alerts: list[Alert]
    ) -> None:
        metadata = budget["metadata"]
        try:
            to_send = [alert for alert in alerts if alert_key(alert) not in self.delivered]
            for hook in ((budget.get("spec") or {}).get("alerts") or {}).get("webhooks") or []:
                ref = hook.get("urlSecretRef") or {}
                secret = await self.kube.read_secret(metadata["namespace"], ref.get("name", ""))
                url = decoded(secret).get(ref.get("key", "url")) if secret else None
                if not url:
                    log.warning(
                        "webhook %s of %s/%s: URL Secret missing",
                        hook.get("name"),
                        metadata["namespace"],
                        metadata["name"],
                    )
                    continue
                for alert in to_send:
                    if not await deliver(self.session, url, payload(hook["format"], alert)):
                        log.error(
                            "webhook %s of %s/%s failed after retries (threshold %d)",
                            hook.get("name"),
                            alert.namespace,
                            alert.budget,
                            alert.threshold,
                        )
            self.delivered.update(alert_key(alert) for alert in to_send)
            for alert in alerts:
                if alert_key(alert) in self.evented:
                    continue
                exceeded = alert.threshold >= 100
                await self.kube.create_event(
                    budget,
                    "Warning" if exceeded else "Normal",
                    "BudgetExceeded" if exceeded else "ThresholdCrossed",
                    f"{alert.title}: {alert.text}",
                    now_iso(),
                )
                self.evented.add(alert_key(alert))
            fresh = await self._current_status(budget)
            alerted = with_alerted(current_alerted(usage, fresh), usage, alerts)
            await self.kube.patch_status(
                "tokenbudgets", metadata["namespace"], metadata["name"], {"alerted": alerted}
            )
            for alert in alerts:  # recorded in status: status now prevents a resend
                self.delivered.discard(alert_key(alert))
                self.evented.discard(alert_key(alert))
        finally:
            self.in_flight.difference_update(alert_key(alert) for alert in alerts)

    async def _current_status(self, budget: dict[str, Any]) -> dict[str, Any]:
        metadata = budget["metadata"]
        found = await self.kube.get_custom("tokenbudgets", metadata["namespace"], metadata["name"])
        status: dict[str, Any] = (found or {}).get("status") or {}
        return status

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
