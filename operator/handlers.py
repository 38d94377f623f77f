"""Kopf handlers: thin. Every change only wakes the reconciler; the logic lives elsewhere.

Deliberate choices (docs/operator.md):
- Only `@kopf.on.event` handlers: Kopf stores no progress or diff-base annotations on our
  objects and adds no finalizers, so nothing can get stuck on deletion and no annotation grows
  toward the 256 KiB limit. Reconciles are level-triggered over all objects instead.
- Standalone (no peering): one replica, Deployment strategy Recreate.
- Liveness: `kopf run --liveness` serves /healthz, which runs the probe below.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import kopf

from llmbudget_operator.kube import Kube
from llmbudget_operator.reconciler import Reconciler
from llmbudget_operator.settings import OperatorSettings
from llmbudget_operator.usage_sync import UsageSync

GROUP = "llmbudget.io"
log = logging.getLogger("llmbudget.operator")


@kopf.on.startup()
async def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING  # Kopf's own per-handler Events: only problems
    settings.watching.server_timeout = 300
    operator_settings = OperatorSettings.from_env()
    kube = await Kube.connect()
    session = aiohttp.ClientSession()
    memo.kube = kube
    memo.session = session
    memo.reconciler = Reconciler(kube, operator_settings)
    memo.usage = UsageSync(kube, operator_settings, session)
    memo.tasks = [
        asyncio.create_task(memo.reconciler.run_forever(), name="reconciler"),
        asyncio.create_task(memo.usage.run_forever(), name="usage-sync"),
    ]
    memo.reconciler.trigger()
    log.info(
        "llmbudget operator started (gateway namespace %s, sync every %.0f s)",
        operator_settings.gateway_namespace,
        operator_settings.sync_interval,
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):
        task.cancel()
    await asyncio.gather(*memo.get("tasks", []), return_exceptions=True)
    if "usage" in memo:
        await memo.usage.close()
    if "session" in memo:
        await memo.session.close()
    if "kube" in memo:
        await memo.kube.close()


@kopf.on.event(GROUP, "tokenbudgets")
def budget_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.trigger()


@kopf.on.event(GROUP, "modelroutes")
def route_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.trigger()


def _relevant_secret(**kwargs: Any) -> bool:
    """A key Secret, or one a TokenBudget or ModelRoute references (as of the last reconcile)."""
    reconciler = kwargs["memo"].get("reconciler")
    if reconciler is None:
        return False
    if "llmbudget.io/budget" in kwargs["labels"]:
        return True
    return (kwargs["namespace"], kwargs["name"]) in reconciler.referenced


@kopf.on.event("", "v1", "secrets", when=_relevant_secret)
def secret_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.trigger()


@kopf.on.probe(id="reconciler")
def reconciler_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    reconciler = memo.get("reconciler")
    usage = memo.get("usage")
    return {
        "configRevision": reconciler.revision if reconciler else None,
        "reconciles": reconciler.reconciles if reconciler else 0,
        "lastReconcileSeconds": round(reconciler.last_duration, 3) if reconciler else None,
        "usageSyncs": usage.syncs if usage else 0,
        "usageError": usage.last_error if usage else None,
    }
