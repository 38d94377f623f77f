"""Exact-match response cache, in process (LRU with a TTL per route).

Key: the caller's namespace, the route and the request normalised (JSON with sorted keys,
without `stream`, `stream_options` and the `user` field, which do not change the answer). The
namespace is part of the key so that a shared route's cache never tells one team what another
sent: a hit is only ever an answer to the same namespace's own earlier request. Only complete,
successful non-streaming chat answers are stored; a hit is served as JSON, or as an SSE stream
when the request streams. Hits cost nothing and reach no provider; they are counted in
`llmbudget_cache_requests_total{result}` and `llmbudget_cache_saved_usd_total`. A request with
`Cache-Control: no-cache` bypasses the cache (and refreshes it).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from llmbudget_gateway.contract.config import Route

IGNORED_FIELDS = ("stream", "stream_options", "user")


@dataclass(frozen=True)
class Entry:
    body: bytes  # the provider's JSON answer, as relayed
    cost_micros: int  # what the original request cost: saved by every hit
    expires: float


class ResponseCache:
    def __init__(self, max_entries: int = 10_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def key(route: Route, namespace: str, body: dict[str, Any]) -> str:
        normalised = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
        payload = orjson.dumps(
            [namespace, route.namespace, route.name, normalised], option=orjson.OPT_SORT_KEYS
        )
        return hashlib.sha256(payload).hexdigest()

    def get(self, key: str, now: float | None = None) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= (now if now is not None else time.monotonic()):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self, key: str, body: bytes, cost_micros: int, ttl: float, now: float | None = None
    ) -> None:
        if ttl <= 0 or len(body) > self.max_bytes // 16:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = Entry(
            body, cost_micros, (now if now is not None else time.monotonic()) + ttl
        )
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)

    def __len__(self) -> int:
        return len(self._entries)


def as_stream(body: bytes, include_usage: bool) -> list[bytes]:
    """A cached chat completion replayed as SSE chunks (one content chunk, finish, usage)."""
    answer = orjson.loads(body)
    base = {
        "id": answer.get("id", "cached"),
        "object": "chat.completion.chunk",
        "created": answer.get("created", 0),
        "model": answer.get("model"),
    }
    events = []
    for choice in answer.get("choices") or []:
        message = choice.get("message") or {}
        delta = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {**call, "index": i} for i, call in enumerate(message["tool_calls"])
            ]
        events.append(
            {
                **base,
                "choices": [
                    {"index": choice.get("index", 0), "delta": delta, "finish_reason": None}
                ],
            }
        )
        events.append(
            {
                **base,
                "choices": [
                    {
                        "index": choice.get("index", 0),
                        "delta": {},
                        "finish_reason": choice.get("finish_reason"),
                    }
                ],
            }
        )
    if include_usage and answer.get("usage"):
        events.append({**base, "choices": [], "usage": answer["usage"]})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
