"""A reference point between the pass-through and the gateway: the least a metering proxy
does per request, written as one raw-ASGI function.

It looks the key up by its SHA-256, parses the body, sends it upstream re-serialized, parses
the usage of the answer, prices it in integer micro-dollars, reserves and settles one counter
and keeps a ledger tuple in memory (no database, no metrics, no tags, no periods, no errors
handled). It measures what CPython charges for metering itself, apart from everything the
gateway does around it. Not a product: docs/benchmarks.md uses it to locate the cost.

Run: uvicorn tests.benchmarks.minimal_meter:app (UPSTREAM_URL=http://127.0.0.1:PORT/v1/...)
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import orjson

from tests.benchmarks.passthrough import lifespan, read_body, respond

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:18080/v1/chat/completions")
KEYS = {hashlib.sha256(b"sk-llmb-bench-key").digest(): ("bench", "default")}
NANOS_IN, NANOS_OUT = 2_000, 8_000  # $2 and $8 per million tokens, in nano-dollars per token
_state: dict[str, Any] = {"spent": 0, "reserved": 0, "ledger": []}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send, _state)
        return
    token = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = value.partition(b" ")[2]
    caller = KEYS.get(hashlib.sha256(token).digest())
    body = await read_body(receive)
    request = orjson.loads(body)
    worst = (len(body) * NANOS_IN + request.get("max_tokens", 4096) * NANOS_OUT + 999) // 1000
    _state["reserved"] += worst
    started = time.perf_counter()
    async with _state["session"].post(
        UPSTREAM, data=orjson.dumps(request), headers={"Content-Type": "application/json"}
    ) as response:
        data = await response.read()
        status = response.status
    usage = orjson.loads(data)["usage"]
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    cost = (prompt * NANOS_IN + completion * NANOS_OUT + 999) // 1000
    _state["reserved"] -= worst
    _state["spent"] += cost
    ledger: list[tuple[Any, ...]] = _state["ledger"]
    elapsed = time.perf_counter() - started
    ledger.append((caller, request["model"], prompt, completion, cost, elapsed))
    if len(ledger) > 10_000:
        ledger.clear()
    await respond(send, status, data)
