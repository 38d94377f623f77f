"""Faults on the node, with the SQLite ledger on its PersistentVolumeClaim:

- the gateway Pod deleted under load: afterwards the ledger holds exactly the requests the
  clients saw answered with 200, no more, no fewer;
- the operator Pod killed (SIGKILL) between two alert thresholds: no alert is sent twice and
  the spend in status catches up;
- the gateway restarted: keys, budgets and spend survive.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.node.cluster import NodeCluster
from tests.node.release import Release, wait_until
from tests.operator.stack import Receiver

TEAM = "marketing"
KEY = "marketing-default-key"


@pytest.fixture(scope="module")
def release(node_cluster: NodeCluster) -> Iterator[Release]:
    rel = Release(node_cluster)
    try:
        rel.install()
        rel.apply_examples()
        wait_until("the key", lambda: rel.key_secret_ready(TEAM, KEY), timeout=60)
        rel.wait_config_loaded()
        yield rel
    finally:
        rel.uninstall()
        node_cluster.recycle_volumes()


def rows_by_user(release: Release, namespace: str, project: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for row in release.ledger_rows(namespace):
        if row.get("project") == project and row.get("user_id"):
            found.setdefault(row["user_id"], []).append(int(row["status"]))
    return found


def test_gateway_pod_deleted_under_load_loses_no_ledger_row(
    release: Release, node_cluster: NodeCluster
) -> None:
    kube = release.kube
    old = release.ready_gateway_pods()[0]["metadata"]["name"]
    load = node_cluster.pods.start(
        TEAM, KEY, "load", "--count", "100000", "--duration", "40", "--concurrency", "4",
        "--pause", "0.01", "--prefix", "del", "--project", "fault-delete", "--timeout", "20",
    )  # fmt: skip
    wait_until(
        "load to be served",
        lambda: rows_by_user(release, TEAM, "fault-delete") or None,
        timeout=60,
    )
    time.sleep(3)
    kube.kubectl("delete", "pod", old, "-n", release.namespace, "--wait=false")
    wait_until(
        "a new gateway Pod Ready",
        lambda: [p for p in release.ready_gateway_pods() if p["metadata"]["name"] != old],
        timeout=120,
    )
    result = node_cluster.pods.result(TEAM, load, timeout=120)
    ok = set(result["ok"])
    rows = rows_by_user(release, TEAM, "fault-delete")
    served = {user for user, statuses in rows.items() if 200 in statuses}
    node_cluster.figure(
        "gateway Pod deleted under load",
        f"{len(ok)} answered 200, {sum(result['failures'].values())} failed while no Pod "
        f"served ({result['failures']}; longest gap without a 200 {result['longest_gap_s']} s),"
        f" ledger rows of 200s {len(served)}, lost {len(ok - served)}",
    )
    assert len(ok) > 50
    # The replacement Pod waited for the old one to drain and release the ledger (one
    # process per SQLite ledger), so the load spanned a time with no gateway serving.
    assert result["longest_gap_s"] > 1
    assert ok - served == set()  # every 200 the clients saw is in the ledger ...
    assert served - ok == set()  # ... and nothing the clients did not see as a 200
    assert all(statuses.count(200) <= 1 for statuses in rows.values())  # never twice


def _alerting_budget(namespace: str, url: str, amount: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: hook, namespace: {namespace}}}
        stringData: {{url: "{url}"}}
        ---
        apiVersion: llmbudget.io/v1alpha1
        kind: TokenBudget
        metadata: {{name: alerting, namespace: {namespace}}}
        spec:
          limits: [{{period: Daily, amount: "{amount}"}}]
          alerts:
            thresholds: [50, 75, 90]
            webhooks: [{{name: finops, format: GenericJSON, urlSecretRef: {{name: hook}}}}]
          onExceeded: {{action: AlertOnly}}
          apiKeys: [{{name: default}}]
        """)


def _spent(release: Release, namespace: str) -> str:
    status = release.kube.get_json("tb", "alerting", "-n", namespace).get("status") or {}
    return str(status.get("spentUSD", ""))


def test_operator_pod_killed_sends_no_alert_twice_and_status_catches_up(
    release: Release, node_cluster: NodeCluster
) -> None:
    kube = release.kube
    namespace = "t-alerts"
    kube.apply(
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"
        "  labels: {llmbudget.io/client: ''}\n"
    )
    receiver = Receiver.start(node_cluster.host_address)
    try:
        kube.apply(_alerting_budget(namespace, receiver.url, "0.001"))  # 1,000 micro-dollars
        wait_until("the key", lambda: release.key_secret_ready(namespace, "alerting-default-key"))
        release.wait_config_loaded()

        def alerts() -> list[int]:
            return sorted(a["threshold"] for a in receiver.received if a["budget"] == "alerting")

        def send(count: int, prefix: str) -> dict[str, Any]:
            out = node_cluster.pods.run(
                namespace, "alerting-default-key", "load", "--count", str(count),
                "--concurrency", "1", "--prefix", prefix, "--max-retries", "3",
            )  # fmt: skip
            assert len(out["ok"]) == count, out
            return out

        send(14, "a")  # ~42 micro-dollars each: past 50 %
        wait_until("the 50 % alert", lambda: alerts() == [50] or None, timeout=60)
        operator = next(
            p["metadata"]["name"]
            for p in kube.get_json("pods", "-n", release.namespace)["items"]
            if p["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
        )
        kube.kubectl(
            "delete", "pod", operator, "-n", release.namespace, "--grace-period=0", "--force"
        )
        send(6, "b")  # past 75 % while the operator is down (or coming back)
        wait_until(
            "a new operator Pod Ready",
            lambda: [
                p for p in kube.get_json("pods", "-n", release.namespace)["items"]
                if p["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
                and p["metadata"]["name"] != operator
                and any(c["type"] == "Ready" and c["status"] == "True"
                        for c in p.get("status", {}).get("conditions", []))
            ],
            timeout=120,
        )  # fmt: skip
        usage = release.admin(f"/admin/v1/budgets/{namespace}/alerting")
        ledger_spent = usage["limits"][0]["spentUsd"]
        wait_until(
            "status to catch up with the ledger",
            lambda: _spent(release, namespace) == ledger_spent or None,
            timeout=60,
        )
        wait_until("the 75 % alert", lambda: alerts() == [50, 75] or None, timeout=60)
        time.sleep(10)  # several more syncs (every 2 s): nothing is sent again
        assert alerts() == [50, 75]
    finally:
        receiver.stop()
        kube.kubectl(
            "delete", "tb", "--all", "-n", namespace, "--wait=true", "--timeout=60s", check=False
        )
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_gateway_restart_keeps_keys_budgets_and_spend(
    release: Release, node_cluster: NodeCluster
) -> None:
    kube = release.kube
    node_cluster.pods.run(TEAM, KEY, "load", "--count", "3", "--prefix", "pre", "--project", "rs")
    before = release.admin(f"/admin/v1/budgets/{TEAM}/{TEAM}")
    key_before = kube.get_json("secret", KEY, "-n", TEAM)["data"]["OPENAI_API_KEY"]
    rows_before = len(release.ledger_rows(TEAM))
    old = {p["metadata"]["uid"] for p in release.gateway_pods()}
    kube.kubectl("rollout", "restart", f"deployment/{release.gateway}", "-n", release.namespace)
    kube.kubectl(
        "rollout", "status", f"deployment/{release.gateway}", "-n", release.namespace,
        "--timeout=120s",
    )  # fmt: skip
    wait_until(
        "only new gateway Pods",
        lambda: (
            (pods := release.ready_gateway_pods())
            and not {p["metadata"]["uid"] for p in pods} & old
        ),
        timeout=120,
    )
    after = release.admin(f"/admin/v1/budgets/{TEAM}/{TEAM}")
    assert [lim["spentMicros"] for lim in after["limits"]] == [
        lim["spentMicros"] for lim in before["limits"]
    ]  # spend restored from the ledger on the claim
    assert len(release.ledger_rows(TEAM)) == rows_before
    assert kube.get_json("secret", KEY, "-n", TEAM)["data"]["OPENAI_API_KEY"] == key_before
    out = node_cluster.pods.run(TEAM, KEY, "load", "--count", "2", "--prefix", "post")
    assert len(out["ok"]) == 2  # the same key still works
    again = release.admin(f"/admin/v1/budgets/{TEAM}/{TEAM}")
    assert again["limits"][0]["spentMicros"] > before["limits"][0]["spentMicros"]
