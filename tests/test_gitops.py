"""The GitOps examples: Argo CD's health script for our objects runs in a real Lua runtime."""

from __future__ import annotations

from typing import Any

import lupa
import pytest
import yaml

from tests.conftest import EXAMPLES

GITOPS = EXAMPLES / "gitops"


@pytest.fixture(scope="module")
def health() -> Any:
    config = yaml.safe_load((GITOPS / "argocd-health.yaml").read_text())
    script = config["data"]["resource.customizations.health.llmbudget.io_TokenBudget"]
    assert script == config["data"]["resource.customizations.health.llmbudget.io_ModelRoute"]
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval(f"function(obj)\n{script}\nend")

    def run(obj: dict[str, Any]) -> dict[str, str]:
        result = check(lua.table_from(obj, recursive=True))
        return {"status": result["status"], "message": result["message"]}

    return run


def budget(generation: int = 2, **condition: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"generation": generation}}
    if condition:
        obj["status"] = {"conditions": [{"type": "Ready", **condition}]}
    return obj


def test_argo_health_follows_the_ready_condition(health: Any) -> None:
    assert health(budget())["status"] == "Progressing"
    assert (
        health(budget(status="True", observedGeneration=2, reason="Enforced", message="ok"))[
            "status"
        ]
        == "Healthy"
    )
    degraded = health(
        budget(
            status="False",
            observedGeneration=2,
            reason="DowngradeTargetNotFound",
            message="no route",
        )
    )
    assert degraded == {"status": "Degraded", "message": "DowngradeTargetNotFound: no route"}
    stale = health(budget(status="True", observedGeneration=1, reason="Enforced", message=""))
    assert stale["status"] == "Progressing"  # the operator has not seen the new spec yet


def test_gitops_manifests_parse_and_point_at_the_examples() -> None:
    application = yaml.safe_load((GITOPS / "argocd-application.yaml").read_text())
    assert application["kind"] == "Application" and application["spec"]["source"]["path"] == (
        "examples"
    )
    flux = list(yaml.safe_load_all((GITOPS / "flux-kustomization.yaml").read_text()))
    assert [d["kind"] for d in flux] == ["GitRepository", "Kustomization"]
    assert flux[1]["spec"]["wait"] is True
