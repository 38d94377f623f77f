"""The Helm chart: lint, templates with several value sets, and install/upgrade/uninstall on
the real control plane (objects are created; nothing runs pods there)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.registry import CollectorRegistry

from llmbudget_gateway.budgets import BudgetBook
from llmbudget_gateway.metrics import Metrics
from tests.conftest import CRDS, REPO, Kube
from tests.controlplane.localcluster import Timings, ensure_binaries

CHART = REPO / "helm" / "llmbudget"


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_binaries(Timings()).helm


def template(helm: Path, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(helm), "template", "rel", str(CHART), "-n", "llmbudget-system", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(doc["kind"] for doc in docs)


def test_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert chart == top


def test_chart_rbac_equals_operator_rbac() -> None:
    rendered = (CHART / "templates" / "operator-rbac.yaml").read_text()
    shipped = (REPO / "operator" / "rbac.yaml").read_text()

    def rules(text: str) -> str:
        block = text[text.index("rules:") : text.index("---", text.index("rules:"))]
        return block.strip()

    assert rules(rendered) == rules(shipped)
    assert "*" not in rules(shipped)


def test_lint(helm: Path) -> None:
    out = subprocess.run(
        [str(helm), "lint", str(CHART), "--strict"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_template(helm: Path) -> None:
    docs = template(helm)
    assert kinds(docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Deployment",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
        "Service",
        "ServiceAccount",
    ]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    gateway = deployments["rel-llmbudget-gateway"]["spec"]["template"]["spec"]
    container = gateway["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["runAsNonRoot"] is True
    assert gateway["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in gateway["volumes"]}
    assert volumes["config"]["secret"]["secretName"] == "llmbudget-gateway-config"
    operator = deployments["rel-llmbudget-operator"]["spec"]
    assert operator["replicas"] == 1 and operator["strategy"]["type"] == "Recreate"
    env = {e["name"]: e.get("value") for e in operator["template"]["spec"]["containers"][0]["env"]}
    assert env["LLMBUDGET_GATEWAY_PUBLIC_URL"] == (
        "http://rel-llmbudget-gateway.llmbudget-system.svc:8080/v1"
    )


def test_optional_objects(helm: Path) -> None:
    docs = template(
        helm,
        "--set",
        "autoscaling.enabled=true",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "grafanaDashboard.enabled=false",
    )
    found = kinds(docs)
    for kind in (
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
    ):
        assert kind in found
    assert "ConfigMap" not in found


@pytest.mark.parametrize(
    "values",
    [(), ("--set", "gateway.ledger.type=postgres", "--set", "gateway.ledger.postgres.dsnSecret=d",
          "--set", "gateway.fakeUpstream=true", "--set", "gateway.maxBodyBytes=16777216")],
)  # fmt: skip
def test_the_gateway_command_parses_with_the_gateways_own_cli(
    helm: Path, values: tuple[str, ...]
) -> None:
    """Every flag the chart renders is one the gateway takes, with a value it accepts (large
    integers once rendered as 4.194304e+06 and crash-looped the Pod on a real node)."""
    from llmbudget_gateway.cli import build_parser

    docs = template(helm, *values)
    gateway = next(d for d in docs if d["metadata"]["name"] == "rel-llmbudget-gateway"
                   and d["kind"] == "Deployment")  # fmt: skip
    command = gateway["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "llmbudget-gateway"
    args = build_parser().parse_args(command[1:])
    assert args.max_body_bytes == (16777216 if values else 4194304)
    assert args.metrics_port == 9090 and args.port == 8080
    assert args.drain_seconds == 5
    assert args.fake_upstream is bool(values)


def test_metrics_have_their_own_port_and_service_for_the_monitor_and_policy(helm: Path) -> None:
    docs = template(
        helm, "--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=true",
        "--set", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
    )  # fmt: skip
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    api = services["rel-llmbudget-gateway"]
    metrics = services["rel-llmbudget-gateway-metrics"]
    assert [p["port"] for p in api["spec"]["ports"]] == [8080]  # what the teams call
    assert [p["port"] for p in metrics["spec"]["ports"]] == [9090]
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert all(metrics["metadata"]["labels"].get(k) == v for k, v in selected.items())
    assert not all(api["metadata"]["labels"].get(k) == v for k, v in selected.items())
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    ingress = policy["spec"]["ingress"]
    assert [rule["ports"] for rule in ingress] == [[{"port": 8080}], [{"port": 9090}]]
    assert ingress[1]["from"] == [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
    # without metricsFrom, nobody outside the gateway's Pods may scrape
    closed = template(helm, "--set", "networkPolicy.enabled=true")
    policy = next(d for d in closed if d["kind"] == "NetworkPolicy")
    assert [rule["ports"] for rule in policy["spec"]["ingress"]] == [[{"port": 8080}]]


def test_the_grace_period_covers_the_drain_and_the_shutdown(helm: Path) -> None:
    for drain in (0, 5, 30):
        docs = template(helm, "--set", f"gateway.drainSeconds={drain}")
        gateway = next(d for d in docs if d["metadata"]["name"] == "rel-llmbudget-gateway"
                       and d["kind"] == "Deployment")  # fmt: skip
        spec = gateway["spec"]["template"]["spec"]
        # drain, then uvicorn's 30 s for in-flight requests, then the ledger flush
        assert spec["terminationGracePeriodSeconds"] >= drain + 30 + 10


def test_postgres_ledger_allows_several_replicas(helm: Path) -> None:
    docs = template(
        helm,
        "--set",
        "gateway.replicas=3",
        "--set",
        "gateway.ledger.type=postgres",
        "--set",
        "gateway.ledger.postgres.dsnSecret=ledger-db",
        "--set",
        "gateway.ledger.postgres.failOpen=true",
    )
    assert "PersistentVolumeClaim" not in kinds(docs)
    gateway = next(
        d for d in docs if d["kind"] == "Deployment" and "gateway" in d["metadata"]["name"]
    )
    spec = gateway["spec"]
    assert spec["replicas"] == 3 and spec["strategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert "--ledger-dsn-file=/etc/llmbudget/ledger/dsn" in command
    assert "--ledger-fail-open" in command
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ledger-dsn"]["secret"] == {
        "secretName": "ledger-db",
        "items": [{"key": "dsn", "path": "dsn"}],
    }
    assert "emptyDir" in volumes["state"]
    assert "postgresql://" not in str(docs)  # the DSN stays in its Secret


def test_bad_values_are_refused(helm: Path) -> None:
    for args, message in (
        (["--set", "gateway.port=0"], "/gateway/port"),
        (["--set", "unknownValue=1"], "unknownValue"),
        (["--set", "gateway.replicas=2"], "needs gateway.ledger.type=postgres"),
        (
            ["--set", "autoscaling.enabled=true", "--set", "autoscaling.maxReplicas=4"],
            "needs gateway.ledger.type=postgres",
        ),
        (["--set", "gateway.ledger.type=postgres"], "needs gateway.ledger.postgres.dsnSecret"),
        (["--set", "gateway.ledger.type=mysql"], "/gateway/ledger/type"),
        (["--set", "gateway.metricsPort=8080"], "metricsPort must differ from gateway.port"),
        (["--set", "gateway.drainSeconds=31"], "/gateway/drainSeconds"),
    ):
        out = subprocess.run(
            [str(helm), "template", "rel", str(CHART), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode != 0 and message in out.stderr, (args, out.stderr)


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for index, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z][\w-]*:", line) and not line.lstrip().startswith("#"):
            before = lines[index - 1].strip() if index else ""
            if not before.startswith("#"):
                missing.append(line.strip())
    assert missing == []


def exported_metric_names() -> set[str]:
    metrics = Metrics(BudgetBook(), lambda: 0)
    registry: CollectorRegistry = metrics.registry
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        else:
            names.add(family.name)
    return names


def test_the_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((CHART / "dashboards" / "llmbudget.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bllmbudget_[a-z_]+\b", target["expr"])
    }
    queried |= set(re.findall(r"\bllmbudget_[a-z_]+\b", json.dumps(dashboard["templating"])))
    assert len(queried) >= 10
    assert queried - exported_metric_names() == set()


@pytest.mark.cluster
def test_install_upgrade_uninstall(kube: Kube) -> None:
    namespace = f"helm-{uuid.uuid4().hex[:6]}"
    release = "llmb"
    kube.helm("install", release, str(CHART), "-n", namespace, "--create-namespace")
    try:
        deployments = kube.get_json("deployments", "-n", namespace)["items"]
        assert sorted(d["metadata"]["name"] for d in deployments) == [
            "llmb-llmbudget-gateway",
            "llmb-llmbudget-operator",
        ]
        assert kube.get_json("service", "-n", namespace, "llmb-llmbudget-gateway")
        token = kube.get_json("secret", "-n", namespace, "llmb-llmbudget-admin-token")["data"]
        role = kube.get_json("clusterrole", "llmb-llmbudget-operator")
        assert all("*" not in rule["verbs"] for rule in role["rules"])
        kube.helm(
            "upgrade", release, str(CHART), "-n", namespace, "--set", "operator.syncInterval=5"
        )
        operator = kube.get_json("deployment", "-n", namespace, "llmb-llmbudget-operator")
        env = {
            e["name"]: e.get("value")
            for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["LLMBUDGET_SYNC_INTERVAL"] == "5"
        again = kube.get_json("secret", "-n", namespace, "llmb-llmbudget-admin-token")["data"]
        assert again == token  # the admin token survives upgrades
        status = kube.helm("status", release, "-n", namespace).stdout
        assert "STATUS: deployed" in status and "REVISION: 2" in status
        assert "envFrom" in status  # NOTES.txt says the next step
    finally:
        kube.helm("uninstall", release, "-n", namespace, check=False)
    assert kube.get_json("deployments", "-n", namespace)["items"] == []
    assert kube.get_json("pvc", "-n", namespace)["items"]  # the ledger volume is kept
    kube.kubectl("delete", "namespace", namespace, "--wait=false")
