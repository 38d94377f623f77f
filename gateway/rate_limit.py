"""Per-key request rate limits: a token bucket per API key, in this replica's memory.

A bucket holds up to `burst` requests and refills at `requests_per_minute`. A request takes
one; an empty bucket refuses with the seconds until the next one (the 429's Retry-After).
Buckets are created on a key's first request and forgotten for keys that leave the config.
Several replicas each keep their own buckets: a key's effective limit is the per-replica
limit times the replicas it reaches (the Service spreads it); the limit stops runaway loops,
while budgets (exact across replicas) stop spend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmbudget_gateway.contract.config import RateLimit

Key = tuple[str, str]  # (namespace, key name)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class KeyRateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[Key, _Bucket] = {}

    def take(self, key: Key, limit: RateLimit, now: float) -> float | None:
        """None if the request may go; else seconds until the key may send again."""
        rate = limit.requests_per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(limit.burst), now)
        else:
            elapsed = max(now - bucket.updated, 0.0)
            bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate

    def retain(self, keys: set[Key]) -> None:
        """Forget the buckets of keys no longer configured."""
        for key in [k for k in self._buckets if k not in keys]:
            del self._buckets[key]

    @staticmethod
    def retry_after(seconds: float) -> int:
        return max(math.ceil(seconds), 1)
