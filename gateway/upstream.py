"""The one shared HTTP client to providers.

Measured on 2 cores (docs/benchmarks.md): httpx's native connection pool collapses under
concurrency, while aiohttp's holds. The gateway therefore talks to providers with one aiohttp
ClientSession per process, created in the app lifespan.
"""

from __future__ import annotations

import aiohttp


def create_session(max_connections: int = 1000) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        ttl_dns_cache=300,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )
