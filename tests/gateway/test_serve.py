"""`llmbudget-gateway serve`: process-level settings that only the server entry point makes."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import uvicorn

from llmbudget_gateway.serve import GatewayServer


async def test_the_heap_built_at_start_is_frozen_after_the_lifespan_startup() -> None:
    during_startup: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                during_startup.append(gc.get_freeze_count())
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    thresholds = gc.get_threshold()
    before = gc.get_freeze_count()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    server = GatewayServer(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        assert during_startup == [before]  # not frozen before the app's own startup ran
        assert gc.get_freeze_count() > before
        assert gc.get_threshold() == (10_000, 20, 20)
    finally:
        server.should_exit = True
        await task
        gc.unfreeze()
        gc.set_threshold(*thresholds)
