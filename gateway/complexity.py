"""A deterministic complexity score (0-100) for chat requests, for tiered routing (`model: auto`).

The score adds points for what makes a request hard, and the route's tiers map it to a
backend: the first tier whose maxScore is at least the score serves it, the last takes the rest.

| signal | points |
|---|---|
| prompt length (UTF-8 bytes / 4 ≈ tokens): ≥ 250 / ≥ 1,000 / ≥ 4,000 | 5 / 15 / 30 |
| code: a fenced block (```) / three or more | 15 / 20 |
| reasoning words (prove, derive, analyse, step by step, why, trade-off, ...): each, up to 2 | 10 |
| multi-step structure (numbered list items, "first ... then ... finally"): up to | 10 |
| tools offered | 15 |
| images attached | 15 |
| conversation: more than 6 messages / more than 12 | 10 / 15 |

Only the text of the last user message is scanned for words (case-insensitive substrings)
and structure (what is being asked now); length, code, tools, images and conversation length
count the whole request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llmbudget_gateway.contract.config import Route, Tier

REASONING_WORDS = (
    "prove",
    "proof",
    "derive",
    "analyse",
    "analyze",
    "step by step",
    "step-by-step",
    "reason",
    "why",
    "trade-off",
    "tradeoff",
    "compare",
    "evaluate",
    "optimise",
    "optimize",
    "debug",
    "architecture",
    "design",
)
SEQUENCE_WORDS = ("first", "then", "next", "finally", "afterwards")
_NUMBERED = re.compile(r"(?m)^[ \t]*(?:\d+[.)]|[-*])[ \t]+\S")


@dataclass(frozen=True)
class Decision:
    score: int
    tier: Tier

    def header(self, backend: str) -> str:
        return f"tier={self.tier.name} score={self.score} backend={backend}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") in ("image_url", "image", "input_image")
        for part in content
    )


def score(body: dict[str, Any]) -> int:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts = [_text(m.get("content")) for m in messages]
    size = sum(len(t.encode()) for t in texts) // 4
    points = 30 if size >= 4000 else 15 if size >= 1000 else 5 if size >= 250 else 0
    fences = sum(t.count("```") for t in texts) // 2
    points += 20 if fences >= 3 else 15 if fences else 0
    last_user = next(
        (
            t
            for m, t in zip(reversed(messages), reversed(texts), strict=True)
            if m.get("role") == "user"
        ),
        "",
    )
    lowered = last_user.lower()  # substring counts: fast C scans, no regex backtracking
    reasoning = sum(lowered.count(word) for word in REASONING_WORDS)
    points += 10 * min(reasoning, 2)
    sequence = sum(lowered.count(word) for word in SEQUENCE_WORDS)
    if sequence >= 2 or len(_NUMBERED.findall(last_user, 0, 20_000)) >= 2:
        points += 10
    if body.get("tools") or body.get("functions"):
        points += 15
    if any(_has_image(m.get("content")) for m in messages):
        points += 15
    points += 15 if len(messages) > 12 else 10 if len(messages) > 6 else 0
    return min(points, 100)


def choose_tier(route: Route, body: dict[str, Any]) -> Decision:
    """The tier of `route` (which must have tiers) for this request."""
    value = score(body)
    for tier in route.tiers:
        if tier.max_score is None or value <= tier.max_score:
            return Decision(value, tier)
    return Decision(value, route.tiers[-1])
