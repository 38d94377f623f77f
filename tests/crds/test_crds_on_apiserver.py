"""The CRDs on a real API server: install, examples, validation, status columns, explain, wait."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES, Kube
from tests.crds.invalid_cases import CASES, Case

pytestmark = pytest.mark.cluster


def manifest(kind: str, name: str, namespace: str, spec: Mapping[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "llmbudget.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def test_crds_are_established_with_short_names_and_category(kube: Kube) -> None:
    resources = kube.kubectl("api-resources", "--api-group=llmbudget.io", "-o", "wide").stdout
    assert "tokenbudgets" in resources and "tb" in resources
    assert "modelroutes" in resources and "mr" in resources
    for crd in ("tokenbudgets.llmbudget.io", "modelroutes.llmbudget.io"):
        obj = kube.get_json("crd", crd)
        conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert obj["spec"]["names"]["categories"] == ["llmbudget"]


def test_every_example_applies_dry_run_then_for_real(kube: Kube) -> None:
    kube.kubectl("apply", "-f", str(EXAMPLES / "00-namespaces.yaml"))
    dry = kube.kubectl("apply", "--dry-run=server", "-f", str(EXAMPLES))
    assert "(server dry run)" in dry.stdout
    applied = kube.kubectl("apply", "-f", str(EXAMPLES))
    expected = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            meta = doc["metadata"]
            expected.append((doc["kind"], meta.get("namespace"), meta["name"]))
    assert len(applied.stdout.strip().splitlines()) == len(expected)
    budgets = kube.get_json("tokenbudgets", "-A")["items"]
    routes = kube.get_json("modelroutes", "-A")["items"]
    found = {("TokenBudget", o["metadata"]["namespace"], o["metadata"]["name"]) for o in budgets}
    found |= {("ModelRoute", o["metadata"]["namespace"], o["metadata"]["name"]) for o in routes}
    assert {e for e in expected if e[0] in ("TokenBudget", "ModelRoute")} <= found
    # Defaults from the schema are applied by the API server.
    marketing = kube.get_json("tb", "-n", "marketing", "marketing")
    assert marketing["spec"]["timezone"] == "UTC"
    assert marketing["spec"]["alerts"]["webhooks"][0]["urlSecretRef"]["key"] == "url"


def test_a_valid_budget_is_accepted(kube: Kube, namespace: str) -> None:
    spec = {
        "limits": [{"period": "Monthly", "amount": "0.000001"}, {"period": "Hourly", "tokens": 1}]
    }
    kube.apply(manifest("TokenBudget", "tiny", namespace, spec))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_specs_are_rejected_naming_the_field(
    kube: Kube, namespace: str, case: Case
) -> None:
    result = kube.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        stdin=manifest(case.kind, "bad", namespace, case.spec),
        check=False,
    )
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert case.field in result.stderr, result.stderr
    assert case.message in result.stderr, result.stderr


def test_status_shows_in_printer_columns(kube: Kube, namespace: str) -> None:
    kube.apply(
        manifest(
            "TokenBudget", "team", namespace, {"limits": [{"period": "Monthly", "amount": "500"}]}
        )
    )
    status = {
        "status": {
            "observedGeneration": 1,
            "state": "Warning",
            "limit": "500.00 USD/Monthly",
            "spent": "262.10 USD",
            "used": "52.4%",
            "percentUsed": 52,
            "spentUSD": "262.1",
            "spentTokens": 123456,
            "periodStart": "2026-11-01T00:00:00Z",
            "periodEnd": "2026-12-01T00:00:00Z",
            "alerted": [
                {"period": "Monthly", "periodStart": "2026-11-01T00:00:00Z", "thresholds": [50]}
            ],
            "lastSyncTime": "2026-11-23T12:00:00Z",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Enforced",
                    "message": "enforced by gateway rev abc",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-11-23T12:00:00Z",
                }
            ],
        }
    }
    kube.kubectl(
        "patch",
        "tb",
        "team",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    table = kube.kubectl("get", "tb", "-A").stdout.splitlines()
    assert table[0].split() == [
        "NAMESPACE",
        "NAME",
        "LIMIT",
        "SPENT",
        "USED",
        "STATE",
        "RESETS",
        "AGE",
    ]
    row = next(line for line in table if line.startswith(namespace))
    cells = row.split()
    assert cells[:8] == [
        namespace,
        "team",
        "500.00",
        "USD/Monthly",
        "262.10",
        "USD",
        "52.4%",
        "Warning",
    ]
    assert cells[8] == "2026-12-01T00:00:00Z"
    wide = kube.kubectl("get", "tb", "team", "-n", namespace, "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-1] == "MESSAGE"
    assert "enforced by gateway rev abc" in wide
    stored = kube.get_json("tb", "team", "-n", namespace)["status"]
    assert stored["alerted"][0]["thresholds"] == [50] and stored["spentTokens"] == 123456


def test_modelroute_columns(kube: Kube, namespace: str) -> None:
    spec = {
        "model": "gpt-4.1",
        "backends": [{"name": "a", "provider": "OpenAI", "baseURL": "https://a.example/v1"}],
    }
    kube.apply(manifest("ModelRoute", "gpt", namespace, spec))
    kube.kubectl(
        "patch",
        "mr",
        "gpt",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "backendsReady": "1/1",
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Resolved",
                            "message": "ok",
                            "lastTransitionTime": "2026-11-23T12:00:00Z",
                        }
                    ],
                }
            }
        ),
    )
    table = kube.kubectl("get", "mr", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODEL", "BACKENDS", "READY", "AGE"]
    assert table[1].split()[:4] == ["gpt", "gpt-4.1", "1/1", "True"]
    applied = kube.get_json("mr", "gpt", "-n", namespace)["spec"]
    assert applied["backends"][0]["weight"] == 1  # schema default
    assert applied["backends"][0]["timeout"] == "60s"


def test_explain_documents_fields(kube: Kube) -> None:
    spec = kube.kubectl("explain", "tokenbudget.spec").stdout
    assert "What the namespace may spend" in spec
    for field in (
        "limits",
        "timezone",
        "scope",
        "alerts",
        "onExceeded",
        "circuitBreaker",
        "apiKeys",
    ):
        assert field in spec
    limits = kube.kubectl("explain", "tb.spec.limits.amount").stdout
    assert "decimal string in USD" in limits
    backends = kube.kubectl("explain", "modelroute.spec.backends.pricing").stdout
    assert "per million tokens" in backends


def test_kubectl_wait_returns_when_ready(kube: Kube, namespace: str) -> None:
    kube.apply(
        manifest(
            "TokenBudget", "waiting", namespace, {"limits": [{"period": "Daily", "tokens": 1000}]}
        )
    )
    waiter = subprocess.Popen(
        [
            str(kube.kubectl_path),
            f"--kubeconfig={kube.kubeconfig}",
            "wait",
            "-n",
            namespace,
            "--for=condition=Ready",
            "--timeout=60s",
            "tb/waiting",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=1.5)  # not Ready yet: still waiting
        kube.kubectl(
            "patch",
            "tb",
            "waiting",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(
                {
                    "status": {
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "reason": "Enforced",
                                "message": "ok",
                                "lastTransitionTime": "2026-11-23T12:00:00Z",
                            }
                        ]
                    }
                }
            ),
        )
        out, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, err
    assert "condition met" in out
