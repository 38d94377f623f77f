"""Gateway hot-path benchmark: nginx direct vs a bare aiohttp pass-through vs the gateway.

One run measures all three against the same nginx upstream (a fixed chat-completion body with
usage), with wrk as the load generator. Servers under test are pinned to CPU 0; nginx and wrk
share CPU 1. Needs nginx and wrk (Debian: apt-get install nginx-light wrk).

    .venv/bin/python tests/benchmarks/bench_gateway.py --duration 10

(Run it by path, as above: `python -m` from the repository root would put the root on sys.path,
where the repo's operator/ folder shadows the standard library's operator module.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hello from the fixed upstream."},
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    }
)
REQUEST = json.dumps(
    {
        "model": "bench-model",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
    }
)
KEY = "sk-llmb-bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


def start_nginx(work: Path, port: int) -> subprocess.Popen[bytes]:
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
worker_cpu_affinity 10;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      return 200 '{BODY}';
    }}
  }}
}}
""")
    return subprocess.Popen(
        ["nginx", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def write_manifests(directory: Path, upstream: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.yaml").write_text(f"""
apiVersion: llmbudget.io/v1alpha1
kind: ModelRoute
metadata: {{name: bench, namespace: llmbudget-system}}
spec:
  model: bench-model
  backends:
    - name: nginx
      provider: OpenAI
      baseURL: {upstream}
      pricing: {{input: "2", output: "8"}}
---
apiVersion: llmbudget.io/v1alpha1
kind: TokenBudget
metadata: {{name: bench, namespace: bench}}
spec:
  limits: [{{period: Monthly, amount: "1000000000"}}]
  circuitBreaker: {{tokensPerHour: 1000000000000}}
---
apiVersion: v1
kind: Secret
metadata:
  name: bench-key
  namespace: bench
  labels: {{llmbudget.io/budget: bench, llmbudget.io/key: default}}
stringData: {{OPENAI_API_KEY: {KEY}}}
""")


def wrk(url: str, connections: int, duration: int, work: Path) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(REQUEST)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    )
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def percentile(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def serve(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", "0", *argv],
        cwd="/",
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--ledger-dsn",
        help="also measure a gateway on this PostgreSQL ledger (budgets shared by replicas); "
        "the database must be empty or an llmbudget ledger",
    )
    parser.add_argument(
        "--litellm",
        default=shutil.which("litellm"),
        help="LiteLLM proxy executable to compare with (pip install 'litellm[proxy]' in its "
        "own venv); default: litellm on PATH, skipped when absent",
    )
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (Debian: apt-get install nginx-light wrk util-linux)")
    conns = [int(c) for c in args.connections.split(",")]
    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="llmbudget-bench-"))
    nginx_port, pass_port, gw_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{nginx_port}/v1"
    write_manifests(work / "manifests", upstream)
    procs = [start_nginx(work, nginx_port)]
    results: dict[str, dict[int, dict[str, float]]] = {}
    try:
        procs.append(
            serve(
                [
                    str(bin_dir / "uvicorn"),
                    "tests.benchmarks.passthrough:app",
                    "--port",
                    str(pass_port),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--app-dir",
                    str(REPO),
                ],
                {"UPSTREAM_URL": f"{upstream}/chat/completions"},
            )
        )
        procs.append(
            serve(
                [
                    str(bin_dir / "llmbudget-gateway"),
                    "serve",
                    str(work / "manifests"),
                    "--port",
                    str(gw_port),
                    "--state-dir",
                    str(work / "state"),
                    "--log-level",
                    "warning",
                ],
            )
        )
        pg_port = free_port()
        if args.ledger_dsn:
            procs.append(
                serve(
                    [str(bin_dir / "llmbudget-gateway"), "serve", str(work / "manifests"),
                     "--port", str(pg_port), "--state-dir", str(work / "state-pg"),
                     "--log-level", "warning"],
                    {"LLMBUDGET_LEDGER_DSN": args.ledger_dsn},
                )
            )  # fmt: skip
        litellm_port = free_port()
        if args.litellm:
            (work / "litellm.yaml").write_text(
                "model_list:\n"
                "  - model_name: bench-model\n"
                "    litellm_params:\n"
                f"      {{model: openai/bench-model, api_base: '{upstream}', api_key: sk-bench}}\n"
                f"general_settings: {{master_key: {KEY}}}\n"  # the key wrk sends
            )
            procs.append(
                serve(
                    [args.litellm, "--config", str(work / "litellm.yaml"), "--port",
                     str(litellm_port), "--num_workers", "1"],
                    {"LITELLM_LOG": "ERROR"},
                )
            )  # fmt: skip
        targets = {
            "nginx direct": f"{upstream}/chat/completions",
            "bare aiohttp pass-through (raw ASGI, uvicorn)": f"http://127.0.0.1:{pass_port}/v1/chat/completions",
            "llmbudget gateway, everything on": f"http://127.0.0.1:{gw_port}/v1/chat/completions",
        }
        if args.ledger_dsn:
            targets["llmbudget gateway, PostgreSQL ledger"] = (
                f"http://127.0.0.1:{pg_port}/v1/chat/completions"
            )
        if args.litellm:
            targets["LiteLLM proxy (1 worker, no database)"] = (
                f"http://127.0.0.1:{litellm_port}/v1/chat/completions"
            )
        for url in targets.values():
            wait_http(url.rsplit("/v1", 1)[0] + "/", timeout=180)
        for name, url in targets.items():
            wrk(url, 16, 2, work)  # warm-up
            results[name] = {c: wrk(url, c, args.duration, work) for c in conns}
            print(name, json.dumps(results[name]), flush=True)
        ledger_rows = subprocess.run(
            ["sqlite3", str(work / "state" / "ledger.sqlite3"), "select count(*) from requests"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; servers on CPU 0, nginx + wrk on CPU 1; "
        f"{args.duration} s per point"
    )
    print("| server | " + " | ".join(f"{c} conn RPS / p50 / p99" for c in conns) + " |")
    print("|---|" + "---|" * len(conns))
    for name, by_conn in results.items():
        cells = [
            f"{r['rps']:,.0f} / {r['p50_ms']:.2f} ms / {r['p99_ms']:.2f} ms"
            + (f" ({r['errors']:.0f} errors)" if r["errors"] else "")
            for r in by_conn.values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    base = results["bare aiohttp pass-through (raw ASGI, uvicorn)"]
    ours = results["llmbudget gateway, everything on"]
    for c in conns:
        print(
            f"{c} conns: gateway = {ours[c]['rps'] / base[c]['rps']:.0%} of the pass-through "
            f"RPS; added p50 {ours[c]['p50_ms'] - base[c]['p50_ms']:+.2f} ms"
        )
    print(f"ledger rows written by the gateway: {ledger_rows}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
