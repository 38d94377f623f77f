from __future__ import annotations

from llmbudget_gateway.contract import ObjectRef, Problem
from llmbudget_operator.conditions import merge_condition, ready_condition

REF = ObjectRef("TokenBudget", "team", "b")


def test_ready_false_carries_reason_and_every_message() -> None:
    condition = ready_condition(
        [
            Problem(REF, "DowngradeTargetNotFound", "no route"),
            Problem(REF, "WebhookSecretNotFound", "no secret"),
        ],
        3,
        "Enforced",
        "ok",
    )
    assert condition == {
        "type": "Ready",
        "status": "False",
        "reason": "DowngradeTargetNotFound",
        "message": "no route; no secret",
        "observedGeneration": 3,
    }


def test_transition_time_moves_only_when_the_status_flips() -> None:
    ok = ready_condition([], 1, "Enforced", "ok")
    first = merge_condition(None, ok, "t1")
    assert first is not None and first[0]["lastTransitionTime"] == "t1"
    assert merge_condition(first, ok, "t2") is None  # nothing changed: no patch
    newer = merge_condition(first, {**ok, "observedGeneration": 2}, "t3")
    assert newer is not None and newer[0]["lastTransitionTime"] == "t1"
    failed = merge_condition(first, ready_condition([Problem(REF, "X", "m")], 2, "", ""), "t4")
    assert failed is not None and failed[0]["lastTransitionTime"] == "t4"
