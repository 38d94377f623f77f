"""SIGTERM under load: the gateway process finishes in-flight requests and loses no ledger row."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from tests.gateway.conftest import TEAM_KEY
from tests.gateway.harness import (
    FakeProvider,
    budget_manifest,
    free_port,
    key_secret,
    route_manifest,
)
from tests.gateway.test_proxy_openai import MESSAGES

GATEWAY = Path(sys.executable).with_name("llmbudget-gateway")


async def _load(url: str, n: int) -> list[str | None]:
    sdk = openai.AsyncOpenAI(base_url=url, api_key=TEAM_KEY, max_retries=0, timeout=30)

    async def one(i: int) -> str | None:
        await asyncio.sleep(i * 0.01)  # a steady stream, not one burst
        try:
            raw = await sdk.chat.completions.with_raw_response.create(
                model="gpt-4.1", messages=MESSAGES, extra_body={"fake": {"delay_ms": 300}}
            )
            return raw.headers["x-llmbudget-request-id"]
        except (openai.APIConnectionError, openai.APIStatusError):
            return None

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await sdk.close()


def test_sigterm_under_load_loses_no_row(tmp_path: Path, fake: FakeProvider) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(
        route_manifest("gpt-4.1", fake.url)
        + "---\n"
        + budget_manifest("team", "team", 'limits: [{period: Monthly, amount: "100"}]\n')
        + "---\n"
        + key_secret("team", "team", "default", TEAM_KEY)
    )
    port = free_port()
    process = subprocess.Popen(
        [
            str(GATEWAY),
            "serve",
            str(manifests),
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

        async def scenario() -> list[str | None]:
            load = asyncio.create_task(_load(f"http://127.0.0.1:{port}/v1", 150))
            await asyncio.sleep(0.8)  # mid-load
            os.kill(process.pid, signal.SIGTERM)
            return await load

        ids = asyncio.run(scenario())
        # uvicorn shuts down gracefully, then re-raises the signal it captured.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    answered = {i for i in ids if i is not None}
    refused = sum(1 for i in ids if i is None)
    assert answered and refused, (len(answered), refused)  # SIGTERM really hit mid-load
    db = sqlite3.connect(tmp_path / "state" / "ledger.sqlite3")
    stored = {row[0] for row in db.execute("SELECT request_id FROM requests WHERE status = 200")}
    assert answered <= stored  # every answered request is in the ledger
    assert len(stored) == len(answered)
