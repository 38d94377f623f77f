"""Budget alerts: payloads per webhook format (pure) and delivery with retries."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger("llmbudget.alerts")
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class Alert:
    namespace: str
    budget: str
    period: str
    threshold: int
    percent: float
    spent: str  # "123.45 USD" or "120000 tokens"
    limit: str
    projected: str
    period_end: str
    state: str
    exceeds_at: str | None = None  # when the forecast reaches the limit (RFC 3339)

    @property
    def title(self) -> str:
        return (
            f"LLM budget {self.namespace}/{self.budget} crossed {self.threshold}% "
            f"of its {self.period} limit"
        )

    @property
    def text(self) -> str:
        outlook = ""
        if self.exceeds_at and self.threshold < 100:
            outlook = (
                f" At this rate it is projected to exceed the limit on {self.exceeds_at[:10]}."
            )
        return (
            f"{self.spent} of {self.limit} spent ({self.percent:.1f}%), projected "
            f"{self.projected} by the end of the period ({self.period_end}).{outlook} "
            f"State: {self.state}."
        )


def payload(format_: str, alert: Alert) -> dict[str, Any]:
    """The JSON body for a receiver in `format_` (the CRD's webhook format names)."""
    if format_ == "Slack":
        return {
            "text": alert.title,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": alert.text}},
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f"namespace `{alert.namespace}` · budget `{alert.budget}` · "
                            f"resets {alert.period_end}",
                        }
                    ],
                },
            ],
        }
    if format_ == "Discord":
        color = 0xE01E5A if alert.threshold >= 100 else 0xECB22E
        return {
            "content": alert.title,
            "embeds": [
                {
                    "title": alert.title,
                    "description": alert.text,
                    "color": color,
                    "fields": [
                        {"name": "Spent", "value": alert.spent, "inline": True},
                        {"name": "Limit", "value": alert.limit, "inline": True},
                        {"name": "Projected", "value": alert.projected, "inline": True},
                    ],
                }
            ],
        }
    if format_ == "MicrosoftTeams":
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": alert.title,
            "themeColor": "E01E5A" if alert.threshold >= 100 else "ECB22E",
            "title": alert.title,
            "text": alert.text,
            "sections": [
                {
                    "facts": [
                        {"name": "Spent", "value": alert.spent},
                        {"name": "Limit", "value": alert.limit},
                        {"name": "Projected", "value": alert.projected},
                        {"name": "Resets", "value": alert.period_end},
                    ]
                }
            ],
        }
    if format_ == "DingTalk":
        return {
            "msgtype": "markdown",
            "markdown": {"title": alert.title, "text": f"### {alert.title}\n\n{alert.text}"},
        }
    return {
        "namespace": alert.namespace,
        "budget": alert.budget,
        "period": alert.period,
        "threshold": alert.threshold,
        "percentUsed": round(alert.percent, 2),
        "spent": alert.spent,
        "limit": alert.limit,
        "projected": alert.projected,
        "projectedExceedAt": alert.exceeds_at,
        "periodEnd": alert.period_end,
        "state": alert.state,
    }


async def deliver(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    delays: tuple[float, ...] = RETRY_DELAYS,
) -> bool:
    """POST with retries and exponential backoff. True once a 2xx answer came back.

    The URL is a secret (it usually embeds a token): it is never logged."""
    for attempt, delay in enumerate((0.0, *delays)):
        if delay:
            await asyncio.sleep(delay)
        try:
            async with session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                if 200 <= response.status < 300:
                    return True
                log.warning("webhook answered HTTP %d (attempt %d)", response.status, attempt + 1)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("webhook failed: %s (attempt %d)", type(error).__name__, attempt + 1)
    return False
