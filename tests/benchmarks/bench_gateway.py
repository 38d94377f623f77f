"""Gateway hot-path benchmark: nginx direct vs a bare aiohttp pass-through vs a minimal
metering proxy vs the gateway.

One run measures them all against the same nginx upstream (a fixed chat-completion body with
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
KEY = "sk-llmb-bench-key"  # minimal_meter.py knows this key too
PASS = "bare aiohttp pass-through (raw ASGI, uvicorn)"
MINIMAL = "minimal metering proxy (raw ASGI, no database)"
GATEWAY = "llmbudget gateway, everything on"
POSTGRES = "llmbudget gateway, PostgreSQL ledger"
LITELLM = "LiteLLM proxy (1 worker, no database)"
ABLATIONS = {  # name -> LLMBUDGET_ABLATE of tests/benchmarks/ablated_gateway.py
    "gateway without ledger rows (ablation)": "ledger",
    "gateway without metering or ledger rows (ablation)": "ledger,metering",
}


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


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU of a process and all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    url: str, connections: int, duration: int, work: Path, pid: int | None
) -> dict[str, float]:
    """One wrk run; with the server's pid, also its CPU time per request in microseconds."""
    before = process_cpu_seconds(pid) if pid is not None else 0.0
    result = wrk(url, connections, duration, work)
    if pid is not None:
        used = process_cpu_seconds(pid) - before
        result["cpu_us"] = 1e6 * used / max(result["rps"] * duration, 1.0)
    return result


def uvicorn_app(module: str, port: int) -> list[str]:
    return [
        str(Path(sys.executable).parent / "uvicorn"),
        f"tests.benchmarks.{module}:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
        "--app-dir",
        str(REPO),
    ]


def gateway(executable: list[str], manifests: Path, port: int, state: Path) -> list[str]:
    return [
        *executable,
        "serve",
        str(manifests),
        "--port",
        str(port),
        "--metrics-port",
        "0",
        "--state-dir",
        str(state),
        "--log-level",
        "warning",
    ]


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
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="also measure the gateway without ledger rows, and without any metering "
        "(tests/benchmarks/ablated_gateway.py), to locate the cost of each part",
    )
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (Debian: apt-get install nginx-light wrk util-linux)")
    conns = [int(c) for c in args.connections.split(",")]
    executable = [str(Path(sys.executable).parent / "llmbudget-gateway")]
    ablated_gateway = [sys.executable, str(REPO / "tests/benchmarks/ablated_gateway.py")]
    work = Path(tempfile.mkdtemp(prefix="llmbudget-bench-"))
    manifests = work / "manifests"
    nginx_port = free_port()
    upstream = f"http://127.0.0.1:{nginx_port}/v1"
    pass_env = {"UPSTREAM_URL": f"{upstream}/chat/completions"}
    write_manifests(manifests, upstream)
    # name -> (argv, extra environment); each gets a port and is pinned to CPU 0
    commands: dict[str, tuple[list[str], dict[str, str]]] = {}
    ports = {name: free_port() for name in (PASS, MINIMAL, GATEWAY)}
    commands[PASS] = (uvicorn_app("passthrough", ports[PASS]), pass_env)
    commands[MINIMAL] = (uvicorn_app("minimal_meter", ports[MINIMAL]), pass_env)
    commands[GATEWAY] = (gateway(executable, manifests, ports[GATEWAY], work / "state"), {})
    if args.ablations:
        for name, parts in ABLATIONS.items():
            ports[name] = free_port()
            argv = gateway(ablated_gateway, manifests, ports[name], work / f"state-{parts}")
            commands[name] = (argv, {"LLMBUDGET_ABLATE": parts})
    if args.ledger_dsn:
        ports[POSTGRES] = free_port()
        argv = gateway(executable, manifests, ports[POSTGRES], work / "state-pg")
        commands[POSTGRES] = (argv, {"LLMBUDGET_LEDGER_DSN": args.ledger_dsn})
    if args.litellm:
        ports[LITELLM] = free_port()
        (work / "litellm.yaml").write_text(
            "model_list:\n"
            "  - model_name: bench-model\n"
            "    litellm_params:\n"
            f"      {{model: openai/bench-model, api_base: '{upstream}', api_key: sk-bench}}\n"
            f"general_settings: {{master_key: {KEY}}}\n"  # the key wrk sends
        )
        argv = [args.litellm, "--config", str(work / "litellm.yaml"), "--port",
                str(ports[LITELLM]), "--num_workers", "1"]  # fmt: skip
        commands[LITELLM] = (argv, {"LITELLM_LOG": "ERROR"})
    procs = [start_nginx(work, nginx_port)]
    results: dict[str, dict[int, dict[str, float]]] = {}
    try:
        pids: dict[str, int | None] = {"nginx direct": None}
        for name, (argv, env) in commands.items():
            proc = serve(argv, env)  # taskset execs the server: the pid is the server's
            procs.append(proc)
            pids[name] = proc.pid
        targets = {"nginx direct": f"{upstream}/chat/completions"}
        targets.update({n: f"http://127.0.0.1:{p}/v1/chat/completions" for n, p in ports.items()})
        for url in targets.values():
            wait_http(url.rsplit("/v1", 1)[0] + "/", timeout=180)
        for name, url in targets.items():
            wrk(url, 16, 2, work)  # warm-up
            results[name] = {c: measure(url, c, args.duration, work, pids[name]) for c in conns}
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
    report(results, conns, args.duration)
    print(f"ledger rows written by the gateway: {ledger_rows}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, dict[int, dict[str, float]]], conns: list[int], seconds: int) -> None:
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; servers on CPU 0, nginx + wrk on CPU 1; "
        f"{seconds} s per point; CPU = user + system time of the server per request"
    )
    print("| server | " + " | ".join(f"{c} conn RPS / p50 / p99 / CPU" for c in conns) + " |")
    print("|---|" + "---|" * len(conns))
    for name, by_conn in results.items():
        cells = [
            f"{r['rps']:,.0f} / {r['p50_ms']:.2f} ms / {r['p99_ms']:.2f} ms"
            + (f" / {r['cpu_us']:.0f} µs" if "cpu_us" in r else "")
            + (f" ({r['errors']:.0f} errors)" if r["errors"] else "")
            for r in by_conn.values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    base, ours, least = results[PASS], results[GATEWAY], results[MINIMAL]
    for c in conns:
        print(
            f"{c} conns: gateway = {ours[c]['rps'] / base[c]['rps']:.0%} of the pass-through "
            f"RPS (minimal metering proxy: {least[c]['rps'] / base[c]['rps']:.0%}); "
            f"added p50 {ours[c]['p50_ms'] - base[c]['p50_ms']:+.2f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
