"""Alert payloads per format, and delivery with retries against a real local receiver."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
from aiohttp import web

from llmbudget_operator.alerts import Alert, deliver, payload

ALERT = Alert(
    namespace="marketing",
    budget="marketing",
    period="Monthly",
    threshold=50,
    percent=52.4,
    spent="262.10 USD",
    limit="500.00 USD/Monthly",
    projected="610.00 USD",
    period_end="2026-12-01T00:00:00Z",
    state="Warning",
)


def test_slack_blocks() -> None:
    body = payload("Slack", ALERT)
    assert body["text"] == "LLM budget marketing/marketing crossed 50% of its Monthly limit"
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context"]
    assert "262.10 USD of 500.00 USD/Monthly" in body["blocks"][1]["text"]["text"]


def test_discord_teams_dingtalk_generic() -> None:
    assert payload("Discord", ALERT)["embeds"][0]["fields"][0] == {
        "name": "Spent",
        "value": "262.10 USD",
        "inline": True,
    }
    teams = payload("MicrosoftTeams", ALERT)
    assert teams["@type"] == "MessageCard" and teams["themeColor"] == "ECB22E"
    ding = payload("DingTalk", ALERT)
    assert ding["msgtype"] == "markdown" and ding["markdown"]["text"].startswith("### LLM")
    assert payload("GenericJSON", ALERT) == {
        "namespace": "marketing",
        "budget": "marketing",
        "period": "Monthly",
        "threshold": 50,
        "percentUsed": 52.4,
        "spent": "262.10 USD",
        "limit": "500.00 USD/Monthly",
        "projected": "610.00 USD",
        "projectedExceedAt": None,
        "periodEnd": "2026-12-01T00:00:00Z",
        "state": "Warning",
    }


def test_the_text_says_when_the_limit_is_projected_to_be_exceeded() -> None:
    assert "projected to exceed" not in ALERT.text
    soon = dataclasses.replace(ALERT, exceeds_at="2026-11-27T06:00:00Z")
    assert "At this rate it is projected to exceed the limit on 2026-11-27." in soon.text
    assert payload("GenericJSON", soon)["projectedExceedAt"] == "2026-11-27T06:00:00Z"
    exceeded = dataclasses.replace(soon, threshold=100)
    assert "projected to exceed" not in exceeded.text  # it already has


async def test_delivery_retries_until_the_receiver_accepts() -> None:
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=503 if len(received) < 3 else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            ok = await deliver(
                session, f"http://127.0.0.1:{port}/hook", {"n": 1}, delays=(0.01, 0.01, 0.01)
            )
            assert ok and len(received) == 3
            failing = await deliver(session, f"http://127.0.0.1:{port}/nope", {}, delays=(0.01,))
            assert not failing
    finally:
        await runner.cleanup()
