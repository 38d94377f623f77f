"""Spend spikes become one Warning Event per day and project on the real API server, and
status.spikesReported keeps a restarted operator from repeating them."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient

from llmbudget_operator.kube import Kube as OperatorKube
from llmbudget_operator.settings import OperatorSettings
from llmbudget_operator.usage_sync import UsageSync
from tests.conftest import Kube
from tests.operator.test_e2e import budget, events

SPIKE = {
    "key": "2026-11-23/",
    "date": "2026-11-23",
    "project": None,
    "spentUsd": "12.00",
    "previousUsd": "4.00",
    "changePercent": 200,
}


@pytest.mark.cluster
async def test_a_spike_is_reported_once(kube: Kube, namespace: str) -> None:
    kube.apply(budget(namespace, "team", "100"))
    await config.load_kube_config(str(kube.kubeconfig))  # the default client configuration
    client = OperatorKube(ApiClient())
    session = aiohttp.ClientSession()
    sync = UsageSync(client, OperatorSettings(), session)

    def current() -> dict[str, Any]:
        found: dict[str, Any] = kube.get_json("tb", "-n", namespace, "team")
        return found

    try:
        project = {**SPIKE, "key": "2026-11-23/apollo", "project": "apollo"}
        await sync._report_spikes(current(), {"spikes": [SPIKE, project]}, {})
        status = current()["status"]
        assert status["spikesReported"] == ["2026-11-23/", "2026-11-23/apollo"]
        # the next sync (or a restarted operator) reads status: nothing is repeated
        await sync._report_spikes(current(), {"spikes": [SPIKE, project]}, status)
        spikes = [e for e in events(kube, namespace, "team") if e["reason"] == "SpendSpike"]
        assert sorted(e["message"] for e in spikes) == [
            f"spend of namespace {namespace} on 2026-11-23: 12.00 USD, 200% above the day "
            "before (4.00 USD)",
            f"spend of project apollo of namespace {namespace} on 2026-11-23: 12.00 USD, 200% "
            "above the day before (4.00 USD)",
        ]
        assert all(e["type"] == "Warning" and e["count"] == 1 for e in spikes)
    finally:
        await session.close()
        await client.close()
