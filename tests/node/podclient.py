"""The client the node tests run inside Pods (the test client image: llmbudget + openai).

It is mounted from a ConfigMap and run as `python3 /client/podclient.py MODE ...`; it reads
OPENAI_API_KEY and OPENAI_BASE_URL from the environment (the operator's key Secret, envFrom)
and prints one JSON document on stdout for the test to read with `kubectl logs`. It imports
nothing from the repository.

  chat                 one plain and one streamed chat completion
  load                 many requests, each with a unique `user`; which ones got a 200
  probe                one request every --interval s until one is refused (429)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from typing import Any

import openai


def chat(args: argparse.Namespace) -> dict[str, Any]:
    client = openai.OpenAI(max_retries=2, default_headers={"X-Project": args.project})
    messages: Any = [{"role": "user", "content": "Say something about budgets."}]
    plain = client.chat.completions.create(model=args.model, messages=messages, max_tokens=8)
    chunks, text, usage = 0, "", None
    stream = client.chat.completions.create(
        model=args.model,
        messages=messages,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    return {
        "base_url": os.environ.get("OPENAI_BASE_URL"),
        "plain": {
            "content": plain.choices[0].message.content,
            "usage": plain.usage.model_dump() if plain.usage else None,
            "request_id": plain.id,
        },
        "stream": {"content": text, "chunks": chunks, "usage": usage},
    }


async def load(args: argparse.Namespace) -> dict[str, Any]:
    client = openai.AsyncOpenAI(
        max_retries=args.max_retries,
        timeout=args.timeout,
        default_headers={"X-Project": args.project},
    )
    ok: list[str] = []
    done_at: list[float] = []  # when each 200 arrived: the longest gap shows an outage
    failures: dict[str, int] = {}
    failed_ids: list[str] = []
    failure_log: list[str] = []  # when and how the first failures happened
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(args.count):
        queue.put_nowait(index)
    deadline = time.monotonic() + args.duration if args.duration else None
    started = time.time()

    async def worker() -> None:
        while not queue.empty():
            if deadline is not None and time.monotonic() > deadline:
                return
            index = queue.get_nowait()
            ident = f"{args.prefix}-{index}"
            try:
                await client.chat.completions.create(
                    model=args.model,
                    messages=[{"role": "user", "content": f"request {ident}"}],  # uncached
                    max_tokens=4,
                    user=ident,
                )
                ok.append(ident)
                done_at.append(time.monotonic())
            except openai.APIError as error:
                status = getattr(error, "status_code", None)
                kind = f"http {status}" if status else type(error).__name__
                failures[kind] = failures.get(kind, 0) + 1
                failed_ids.append(ident)
                if len(failure_log) < 40:
                    cause = error.__cause__ or error.__context__
                    failure_log.append(
                        f"{time.time():.3f} {kind} {str(error)[:80]} / {cause!r}"[:240]
                    )
            if args.pause:
                await asyncio.sleep(args.pause)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    gaps = [b - a for a, b in itertools.pairwise(done_at)]
    return {
        "longest_gap_s": round(max(gaps, default=0.0), 3),
        "sent": len(ok) + len(failed_ids),
        "ok": ok,
        "failures": failures,
        "failed_ids": failed_ids,
        "failure_log": failure_log,
        "started": started,
        "finished": time.time(),
    }


def probe(args: argparse.Namespace) -> dict[str, Any]:
    client = openai.OpenAI(max_retries=0, timeout=10, default_headers={"X-Project": args.project})
    deadline = time.monotonic() + args.timeout
    sent = 0
    print(json.dumps({"probing_since": time.time()}), file=sys.stderr, flush=True)
    while time.monotonic() < deadline:
        sent += 1
        try:
            client.chat.completions.create(  # a new body each time: never a (free) cache hit
                model=args.model,
                messages=[{"role": "user", "content": f"probe {sent}"}],
                max_tokens=1,
            )
        except openai.RateLimitError as error:
            body = error.body if isinstance(error.body, dict) else {}
            return {"refused_at": time.time(), "sent": sent, "error": body}
        except openai.APIError as error:
            print(json.dumps({"error": str(error)[:200]}), file=sys.stderr, flush=True)
        time.sleep(args.interval)
    return {"refused_at": None, "sent": sent}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["chat", "load", "probe"])
    parser.add_argument("--model", default="gpt-4.1")
    parser.add_argument("--project", default="node-tests")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--prefix", default="r")
    parser.add_argument("--max-retries", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    if args.mode == "chat":
        result = chat(args)
    elif args.mode == "load":
        result = asyncio.run(load(args))
    else:
        result = probe(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
