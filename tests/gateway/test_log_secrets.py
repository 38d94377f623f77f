"""No secret reaches the gateway's logs: API keys (valid or guessed), the admin token, provider
credentials and the ledger database password, at debug level, through successes, refusals,
upstream errors, a database outage and a shutdown."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import httpx
import openai

from tests.gateway.harness import FakeProvider, budget_manifest, free_port, key_secret
from tests.gateway.test_proxy_openai import MESSAGES
from tests.gateway.test_sigterm import GATEWAY
from tests.postgres import PostgresServer

TEAM_KEY = "sk-llmb-Log-Scan-Team-Key-0123456789"
GUESSED_KEY = "sk-llmb-Guessed-Key-Never-Valid-987"
ADMIN = "admin-Token-For-Log-Scan-42"
PROVIDER_KEY = "sk-proj-Provider-Credential-abcdef"
DB_PASSWORD = "Pg-Passw0rd-In-The-DSN"


def test_logs_hold_no_secret(tmp_path: Path, fake: FakeProvider) -> None:
    postgres = PostgresServer()  # its own server: this test stops it
    postgres.start()
    try:
        scan(tmp_path, fake, postgres)
    finally:
        postgres.stop()


def scan(tmp_path: Path, fake: FakeProvider, postgres: PostgresServer) -> None:
    postgres.create_database("logscan")
    dsn = postgres.dsn("logscan").replace("postgres@", f"postgres:{DB_PASSWORD}@")
    (tmp_path / "dsn").write_text(dsn)
    (tmp_path / "admin").write_text(ADMIN)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(
        textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: provider, namespace: llmbudget-system}}
        stringData: {{apiKey: {PROVIDER_KEY}}}
        ---
        apiVersion: llmbudget.io/v1alpha1
        kind: ModelRoute
        metadata: {{name: gpt, namespace: llmbudget-system}}
        spec:
          model: gpt-4.1
          backends:
            - name: main
              provider: OpenAI
              baseURL: {fake.url}
              credentialSecretRef: {{name: provider}}
              pricing: {{input: "2", output: "8"}}
        ---
        """)
        + budget_manifest("team", "team", 'limits: [{period: Monthly, amount: "100"}]\n')
        + "---\n"
        + key_secret("team", "team", "default", TEAM_KEY)
    )
    port = free_port()
    log = tmp_path / "gateway.log"
    process = subprocess.Popen(
        [
            str(GATEWAY), "serve", str(manifests), "--port", str(port),
            "--metrics-port", "0", "--state-dir", str(tmp_path / "state"), "--log-level", "debug",
            "--admin-token-file", str(tmp_path / "admin"),
            "--ledger-dsn-file", str(tmp_path / "dsn"),
        ],
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{root}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        sdk = openai.OpenAI(base_url=f"{root}/v1", api_key=TEAM_KEY, max_retries=0)
        sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        for stream in (False, True):
            with contextlib.suppress(openai.APIStatusError):
                sdk.chat.completions.create(
                    model="gpt-4.1",
                    messages=MESSAGES,
                    stream=stream,
                    extra_body={"fake": {"status": 500}},
                )
        guessed = openai.OpenAI(base_url=f"{root}/v1", api_key=GUESSED_KEY, max_retries=0)
        with contextlib.suppress(openai.AuthenticationError):
            guessed.models.list()
        for token in (ADMIN, GUESSED_KEY, TEAM_KEY):
            httpx.get(f"{root}/admin/v1/budgets", headers={"Authorization": f"Bearer {token}"})
        httpx.post(f"{root}/v1/chat/completions", content=b"{not json", headers={
            "Authorization": f"Bearer {TEAM_KEY}"})  # fmt: skip
        postgres.pause()  # the database goes away: requests are refused, errors logged
        with contextlib.suppress(openai.APIStatusError):
            sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        time.sleep(1.5)  # the ledger writer and the sync loop log their failures
        postgres.resume()
        time.sleep(1.5)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert "ledger rows written" in text  # the log really was written
    assert "unavailable" in text or "failed" in text  # the outage was logged
    for secret in (TEAM_KEY, GUESSED_KEY, ADMIN, PROVIDER_KEY, DB_PASSWORD):
        assert secret not in text, f"a secret ({secret[:8]}...) is in the gateway log"
