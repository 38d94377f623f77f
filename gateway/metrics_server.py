"""`GET /metrics` on its own listener (`--metrics-port`), apart from the API port.

Metrics name every namespace's budgets and spend; the API port is reachable by every team
(and by any Pod the NetworkPolicy admits), so the scrape endpoint lives on a port only the
monitoring system is let through to, as cert-manager and most operators do.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmbudget_gateway.metrics import Metrics


async def start(metrics: Callable[[], Metrics], host: str, port: int) -> web.AppRunner:
    """Serve the registry of `metrics()` on host:port; the caller cleans the runner up."""

    async def scrape(request: web.Request) -> web.Response:
        body = generate_latest(metrics().registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
