"""Complexity scoring cost: a ~4,000-token prompt, p50/p99 over many runs.

.venv/bin/python tests/benchmarks/bench_complexity.py
"""

from __future__ import annotations

import platform
import time

from llmbudget_gateway.complexity import score

RUNS = 5000


def main() -> None:
    text = (
        "Explain step by step why the cache misses, then propose a fix.\n"
        "```py\nfor i in range(10):\n    print(i)\n```\n"
        + "The quick brown fox jumps over the lazy dog. "
        * 350
    )  # ~4k tokens
    body = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        score(body)
        timings.append(time.perf_counter() - started)
    timings.sort()
    p50, p99 = timings[RUNS // 2], timings[int(RUNS * 0.99)]
    print(
        f"score={score(body)}; {RUNS} runs on a {len(text):,}-character prompt: "
        f"p50 {p50 * 1e6:.0f} µs, p99 {p99 * 1e6:.0f} µs "
        f"({platform.machine()}, Python {platform.python_version()})"
    )


if __name__ == "__main__":
    main()
