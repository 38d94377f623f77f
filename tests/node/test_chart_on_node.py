"""The chart installed for real on a node, then used as a user would: `helm install --wait`,
`kubectl apply -f examples/`, the minted key Secrets in a client Pod (envFrom) calling the
gateway's Service with the openai SDK, `kubectl get tb -A`, `kubectl wait`, and a lowered
limit enforced through the config Secret volume the kubelet updates. The tests of this module
run in order on one release."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.node.cluster import NodeCluster
from tests.node.release import TEAM_NAMESPACES, Release, wait_until

OPERATOR_SA = "system:serviceaccount:llmbudget-system:llmbudget-operator"
KEYS = {  # the key Secrets examples/ asks the operator for
    "marketing": ["marketing-default-key"],
    "engineering": ["engineering-ci-key", "engineering-dev-key"],
    "data-science": ["data-science-notebooks-key"],
}


@pytest.fixture(scope="module")
def release(node_cluster: NodeCluster) -> Iterator[Release]:
    rel = Release(node_cluster)
    try:
        seconds = rel.install()
        node_cluster.figure("helm install --wait (SQLite ledger, 1 gateway)", f"{seconds:.1f} s")
        yield rel
    finally:
        rel.uninstall()
        node_cluster.recycle_volumes()


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_install_waits_for_ready_pods_with_the_charts_security(release: Release) -> None:
    kube = release.kube
    for crd in ("tokenbudgets.llmbudget.io", "modelroutes.llmbudget.io"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=10s")
    pods = kube.get_json("pods", "-n", release.namespace)["items"]
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in pods}
    assert set(components) == {"gateway", "operator"}
    for component, pod in components.items():
        assert _ready(pod), component
        status = pod["status"]["containerStatuses"][0]
        assert status["restartCount"] == 0, component  # no crash loop on a fresh install
        security = pod["spec"]["containers"][0]["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["runAsUser"] == 10001
        uid = kube.kubectl(
            "exec", "-n", release.namespace, pod["metadata"]["name"], "--", "id", "-u"
        ).stdout.strip()
        assert uid == "10001", component
    gateway = components["gateway"]
    assert gateway["spec"]["securityContext"]["fsGroup"] == 10001
    # the SQLite ledger lives on the claim, writable by the non-root user through fsGroup
    claim = kube.get_json("pvc", "-n", release.namespace)["items"][0]
    assert claim["status"]["phase"] == "Bound"
    listing = kube.kubectl(
        "exec", "-n", release.namespace, gateway["metadata"]["name"], "--",
        "ls", "-ln", "/var/lib/llmbudget",
    ).stdout  # fmt: skip
    assert "ledger.sqlite3" in listing
    assert " 10001 " in listing


def test_operator_runs_with_only_the_charts_service_account(release: Release) -> None:
    kube = release.kube
    pod = next(
        p
        for p in kube.get_json("pods", "-n", release.namespace)["items"]
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    )
    assert pod["spec"]["serviceAccountName"] == "llmbudget-operator"

    def can(verb: str, resource: str, *extra: str) -> bool:
        out: str = kube.kubectl(
            "auth", "can-i", verb, resource, f"--as={OPERATOR_SA}", *extra, check=False
        ).stdout
        return out.strip() == "yes"

    assert can("patch", "tokenbudgets.llmbudget.io", "--subresource=status", "-A")
    assert not can("patch", "tokenbudgets.llmbudget.io", "-A")  # status only, never the spec
    assert can("create", "secrets", "-n", "marketing")
    assert not can("create", "pods", "-A")
    assert not can("delete", "tokenbudgets.llmbudget.io", "-A")
    assert not can("get", "nodes")
    assert not can("create", "clusterrolebindings")


def test_examples_applied_and_keys_minted(release: Release) -> None:
    release.apply_examples()
    for namespace, secrets in KEYS.items():
        for secret in secrets:
            wait_until(
                f"the key Secret {namespace}/{secret}",
                lambda ns=namespace, s=secret: release.key_secret_ready(ns, s),
                timeout=60,
            )
    seconds = release.wait_config_loaded()
    release.cluster.figure(
        "keys minted -> accepted by the gateway (Secret volume sync)", f"{seconds:.1f} s"
    )
    data = release.kube.get_json("secret", "marketing-default-key", "-n", "marketing")["data"]
    assert set(data) >= {"OPENAI_API_KEY", "OPENAI_BASE_URL"}
    # the config Secret the gateway mounts holds key hashes, never a key
    config = release.kube.kubectl(
        "get", "secret", "llmbudget-gateway-config", "-n", release.namespace,
        "-o", "jsonpath={.data.config\\.json}",
    ).stdout  # fmt: skip
    assert data["OPENAI_API_KEY"] not in config


def test_client_pod_calls_the_gateway_service_with_its_key(
    release: Release, node_cluster: NodeCluster
) -> None:
    # examples/ route gpt-4.1 to OpenAI and claude-sonnet-4.5 to Anthropic (translated)
    for model in ("gpt-4.1", "claude-sonnet-4.5"):
        out = node_cluster.pods.run(
            "marketing", "marketing-default-key", "chat", "--model", model, "--project", "launch"
        )
        assert out["base_url"] == (
            f"http://{release.gateway}.{release.namespace}.svc:8080/v1"
        )  # the operator's OPENAI_BASE_URL, resolved by CoreDNS
        assert out["plain"]["content"]
        assert out["plain"]["usage"]["completion_tokens"] > 0
        assert out["stream"]["content"]
        assert out["stream"]["chunks"] > 2
        assert out["stream"]["usage"]["total_tokens"] > 0


def test_kubectl_get_tb_shows_the_spend(release: Release) -> None:
    usage = release.admin("/admin/v1/budgets/marketing/marketing")
    spent = Decimal(usage["spentUsd"] if "spentUsd" in usage else usage["limits"][0]["spentUsd"])
    assert spent > 0

    def marketing_row() -> list[str] | None:
        table = release.kube.kubectl("get", "tb", "-A").stdout.splitlines()
        # NAMESPACE NAME LIMIT(amount unit/period) SPENT(amount unit) USED STATE RESETS AGE
        row = next(line.split() for line in table if line.startswith("marketing"))
        return row if Decimal(row[4]) == spent else None

    row = wait_until("the ledger's spend in kubectl get tb", marketing_row, timeout=60)
    assert row[5] == "USD" and row[7] == "Ok"


def test_kubectl_wait_for_ready(release: Release) -> None:
    for namespace in TEAM_NAMESPACES:
        release.kube.kubectl(
            "wait", "--for=condition=Ready", "tb", "--all", "-n", namespace, "--timeout=60s"
        )


def test_lowered_limit_enforced_through_the_secret_volume(
    release: Release, node_cluster: NodeCluster
) -> None:
    kube = release.kube
    gateway_before = release.ready_gateway_pods()[0]
    revision_before = release.admin("/readyz")
    probe = node_cluster.pods.start(
        "marketing", "marketing-default-key", "probe", "--timeout", "120", "--interval", "0.1"
    )
    wait_until(
        "the probe Pod to run",
        lambda: kube.kubectl("get", "pod", probe, "-n", "marketing",
                             "-o", "jsonpath={.status.phase}").stdout == "Running",
    )  # fmt: skip
    time.sleep(1)  # it is being admitted: the limit is not reached yet
    budget = kube.get_json("tb", "marketing", "-n", "marketing")
    spec = budget["spec"]
    spec["limits"] = [
        {"period": "Monthly", "amount": "500"},
        {"period": "Daily", "amount": "0.000001"},  # a micro-dollar: already spent
    ]
    manifest = {
        "apiVersion": budget["apiVersion"],
        "kind": budget["kind"],
        "metadata": {"name": "marketing", "namespace": "marketing"},
        "spec": spec,
    }
    applied = time.time()
    kube.apply(json.dumps(manifest))
    result = node_cluster.pods.result("marketing", probe, timeout=150)
    assert result["refused_at"] is not None, result
    error = result["error"].get("error", result["error"])  # the SDK keeps the inner object
    assert error["code"] == "budget_exceeded"
    seconds = result["refused_at"] - applied
    node_cluster.figure(
        "lowered limit -> enforced (apply .. first 429, via Secret volume)", f"{seconds:.1f} s"
    )
    gateway_after = release.ready_gateway_pods()[0]
    assert gateway_after["metadata"]["uid"] == gateway_before["metadata"]["uid"]
    assert gateway_after["status"]["containerStatuses"][0]["restartCount"] == 0
    assert release.admin("/readyz")["configRevision"] != revision_before["configRevision"]
