"""The baseline: a bare raw-ASGI pass-through to the upstream with one aiohttp session.

No auth, no parsing, no pricing, no ledger: the ceiling a Python proxy on this stack can reach.
Run: uvicorn tests.benchmarks.passthrough:app (UPSTREAM_URL=http://127.0.0.1:PORT/v1/...)
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:18080/v1/chat/completions")
_state: dict[str, aiohttp.ClientSession] = {}


async def lifespan(receive: Any, send: Any, state: dict[str, Any]) -> None:
    """Open `state["session"]` at startup, close it at shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state["session"] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000), auto_decompress=False
            )
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await state["session"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send, _state)
        return
    body = await read_body(receive)
    async with _state["session"].post(
        UPSTREAM, data=body, headers={"Content-Type": "application/json"}
    ) as response:
        data = await response.read()
        status = response.status
    await respond(send, status, data)
