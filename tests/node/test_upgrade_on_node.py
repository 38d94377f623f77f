"""Two gateway replicas on a shared PostgreSQL ledger, upgraded under load: `helm upgrade`
rolls both Pods while clients (openai SDK, no retries) keep sending, and not one request
fails; then a restart of both replicas keeps keys, budgets and spend.

The PostgreSQL server runs on the test machine, on the node's address, with a password: the
DSN reaches the gateway as a Secret mounted as a file, as the chart documents."""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.node.cluster import NodeCluster
from tests.node.release import Release, wait_until
from tests.postgres import PostgresServer

TEAM = "marketing"  # engineering's keys are rate-limited (examples/31-engineering.yaml)
KEY = "marketing-default-key"


@pytest.fixture(scope="module")
def database(node_cluster: NodeCluster) -> Iterator[str]:
    """A database Pods reach at the host address, with a password (scram-sha-256)."""
    server = PostgresServer(
        host=node_cluster.host_address, password=uuid.uuid4().hex, client_cidr="10.244.0.0/16"
    )
    server.start()
    try:
        yield server.create_database("llmbudget")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def release(node_cluster: NodeCluster, database: str) -> Iterator[Release]:
    rel = Release(node_cluster)
    kube = node_cluster.kube
    kube.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {rel.namespace}}}\n")
    kube.apply(
        textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: ledger-dsn, namespace: {rel.namespace}}}
        stringData: {{dsn: "{database}"}}
        """)
    )
    try:
        seconds = rel.install(
            {
                "gateway": {
                    "replicas": 2,
                    "ledger": {"type": "postgres", "postgres": {"dsnSecret": "ledger-dsn"}},
                },
                "podDisruptionBudget": {"enabled": True},
            }
        )
        node_cluster.figure(
            "helm install --wait (PostgreSQL ledger, 2 gateways)", f"{seconds:.1f} s"
        )
        rel.apply_examples()
        wait_until("the key", lambda: rel.key_secret_ready(TEAM, KEY), timeout=60)
        rel.wait_config_loaded()
        yield rel
    finally:
        rel.uninstall()


def test_helm_upgrade_under_load_fails_no_request(
    release: Release, node_cluster: NodeCluster
) -> None:
    assert len(release.ready_gateway_pods()) == 2
    before = {p["metadata"]["uid"] for p in release.gateway_pods()}
    load = node_cluster.pods.start(
        TEAM, KEY, "load", "--count", "1000000", "--duration", "75", "--concurrency", "8",
        "--pause", "0.0", "--prefix", "upg", "--project", "upgrade", "--max-retries", "0",
    )  # fmt: skip
    wait_until(
        "the load to reach the gateway",
        lambda: any(r.get("project") == "upgrade" for r in release.ledger_rows(TEAM)),
        timeout=60,
    )
    followers = release.follow_gateway_logs()
    try:
        seconds = release.upgrade({"gateway": {"podAnnotations": {"llmbudget.io/rollout": "2"}}})
    finally:
        time.sleep(8)  # the old Pods' drain and shutdown lines
        for follower in followers:
            follower.terminate()
    after = {p["metadata"]["uid"] for p in release.ready_gateway_pods()}
    assert not before & after  # both replicas were replaced while the load ran
    result = node_cluster.pods.result(TEAM, load, timeout=180)
    ok = set(result["ok"])
    rows = [r for r in release.ledger_rows(TEAM) if r.get("project") == "upgrade"]
    served = {r["user_id"] for r in rows if r["status"] == 200}
    node_cluster.figure(
        "helm upgrade under load (2 replicas, PostgreSQL)",
        f"{seconds:.0f} s rollout, {len(ok)} requests answered, "
        f"{sum(result['failures'].values())} failed {result['failures'] or ''}, "
        f"ledger rows of 200s {len(served)}",
    )
    assert result["failures"] == {}, (
        "\n".join(result["failure_log"]) + "\n" + release.gateway_log_tails()
    )
    assert len(ok) > 200
    assert served == ok
    assert len(rows) == len(ok)  # one row each, nothing billed twice


def test_both_replicas_restarted_keep_keys_budgets_and_spend(
    release: Release, node_cluster: NodeCluster
) -> None:
    kube = release.kube
    before = release.admin(f"/admin/v1/budgets/{TEAM}/{TEAM}")
    key_before = kube.get_json("secret", KEY, "-n", TEAM)["data"]["OPENAI_API_KEY"]
    old = {p["metadata"]["uid"] for p in release.gateway_pods()}
    kube.kubectl("rollout", "restart", f"deployment/{release.gateway}", "-n", release.namespace)
    kube.kubectl(
        "rollout", "status", f"deployment/{release.gateway}", "-n", release.namespace,
        "--timeout=180s",
    )  # fmt: skip
    wait_until(
        "two new gateway Pods",
        lambda: (
            len(pods := release.ready_gateway_pods()) == 2
            and not {p["metadata"]["uid"] for p in pods} & old
        ),
        timeout=120,
    )
    for pod in release.ready_gateway_pods():  # every replica sees the shared spend
        usage = release.admin(f"/admin/v1/budgets/{TEAM}/{TEAM}", pod=pod["metadata"]["name"])
        assert usage["limits"][0]["spentMicros"] == before["limits"][0]["spentMicros"]
    assert kube.get_json("secret", KEY, "-n", TEAM)["data"]["OPENAI_API_KEY"] == key_before
    out = node_cluster.pods.run(TEAM, KEY, "load", "--count", "2", "--prefix", "post")
    assert len(out["ok"]) == 2
