"""Ready conditions (pure): from render problems to the status patch of each object."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmbudget_gateway.contract import Problem


def ready_condition(
    problems: list[Problem], generation: int, ok_reason: str, ok_message: str
) -> dict[str, Any]:
    if problems:
        return {
            "type": "Ready",
            "status": "False",
            "reason": problems[0].reason,
            "message": "; ".join(p.message for p in problems),
            "observedGeneration": generation,
        }
    return {
        "type": "Ready",
        "status": "True",
        "reason": ok_reason,
        "message": ok_message,
        "observedGeneration": generation,
    }


def merge_condition(
    current: Sequence[Mapping[str, Any]] | None, new: dict[str, Any], now: str
) -> list[dict[str, Any]] | None:
    """The conditions list with `new` in place, or None when nothing would change.

    lastTransitionTime moves only when the status flips."""
    existing = {c.get("type"): dict(c) for c in current or []}
    old = existing.get(new["type"])
    if old is not None and all(old.get(k) == v for k, v in new.items()):
        return None
    transition = now
    if old is not None and old.get("status") == new["status"] and old.get("lastTransitionTime"):
        transition = old["lastTransitionTime"]
    existing[new["type"]] = {**new, "lastTransitionTime": transition}
    return list(existing.values())
