"""Operator benchmark on the local control plane (etcd + kube-apiserver, as in the tests).

Measures, with N TokenBudgets (default 1,000 across 100 namespaces, one API key each) in the
cluster: the operator's first full reconcile and one reconcile after an edit, its RSS, the
time from a TokenBudget edit to the gateway enforcing the new limit (p50/p95), and the lag
from spend to status (p50/p95).

    .venv/bin/python tests/benchmarks/bench_operator.py --budgets 1000 --namespaces 100
"""

from __future__ import annotations

import operator  # noqa: F401 - the standard library's, before the repo root joins sys.path
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import openai  # noqa: E402

from tests.conftest import CRDS, Kube  # noqa: E402
from tests.controlplane.localcluster import LocalControlPlane, Timings, ensure_binaries  # noqa: E402
from tests.gateway.harness import start_fake_provider, stop_fake_provider  # noqa: E402
from tests.operator.stack import Stack, wait_for  # noqa: E402

MESSAGES = [{"role": "user", "content": "count my tokens please"}]


def budgets_manifest(count: int, namespaces: int) -> str:
    docs = [
        f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: team-{n}}}\n"
        for n in range(namespaces)
    ]
    for i in range(count):
        docs.append(
            "apiVersion: llmbudget.io/v1alpha1\nkind: TokenBudget\n"
            f"metadata: {{name: budget-{i}, namespace: team-{i % namespaces}}}\n"
            'spec:\n  limits: [{period: Monthly, amount: "100"}, '
            '{period: Daily, amount: "10"}]\n  apiKeys: [{name: default}]\n'
        )
    return "---\n".join(docs)


def probe_budget(limit: str) -> str:
    return (
        "apiVersion: llmbudget.io/v1alpha1\nkind: TokenBudget\n"
        "metadata: {name: probe, namespace: bench}\n"
        f'spec:\n  limits: [{{period: Daily, amount: "{limit}"}}]\n'
        "  apiKeys: [{name: default}]\n"
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    return int(out.stdout.strip() or 0) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budgets", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--sync-interval", type=float, default=10.0)
    args = parser.parse_args()

    binaries = ensure_binaries(Timings())
    plane = LocalControlPlane(binaries)
    plane.start()
    kube = Kube(plane.kubeconfig, binaries.kubectl)
    fake = start_fake_provider()
    work = Path(tempfile.mkdtemp(prefix="llmbudget-opbench-"))
    stack = Stack(kube, work, "llmbudget-system", sync_interval=args.sync_interval)
    try:
        kube.kubectl("apply", "--server-side", "-f", str(CRDS))
        kube.kubectl("wait", "--for=condition=Established", "crd", "--all")
        kube.kubectl("create", "namespace", "llmbudget-system")
        kube.kubectl("create", "namespace", "bench")
        kube.apply(f"""apiVersion: llmbudget.io/v1alpha1
kind: ModelRoute
metadata: {{name: bench, namespace: llmbudget-system}}
spec:
  model: bench-model
  backends: [{{name: fake, provider: OpenAI, baseURL: "{fake.url}",
              pricing: {{input: "2", output: "8"}}}}]
""")
        started = time.monotonic()
        kube.kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=budgets_manifest(args.budgets, args.namespaces),
        )
        print(
            f"created {args.budgets} TokenBudgets in {args.namespaces} namespaces "
            f"in {time.monotonic() - started:.1f} s",
            flush=True,
        )

        started = time.monotonic()
        stack.start_operator()

        def all_keys() -> bool:
            health = stack.operator_health() or {}
            return (
                bool(health.get("reconciles"))
                and len(kube.get_json("secrets", "-A", "-l", "llmbudget.io/budget")["items"])
                >= args.budgets
            )

        wait_for("every key minted", all_keys, timeout=900, interval=1)
        first = time.monotonic() - started
        stack.start_gateway()
        kube.apply(probe_budget("0.0002"))
        key_secret = wait_for(
            "probe key",
            lambda: (
                kube.kubectl(
                    "get",
                    "secret",
                    "-n",
                    "bench",
                    "probe-default-key",
                    "-o",
                    "jsonpath={.data.OPENAI_API_KEY}",
                    check=False,
                ).stdout
            ),
        )
        import base64

        key = base64.b64decode(key_secret).decode()
        sdk = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=key, max_retries=0)
        wait_for("gateway knows the key", lambda: sdk.models.list() is not None, timeout=60)
        health = stack.operator_health() or {}
        reconcile_seconds = float(health.get("lastReconcileSeconds") or 0)
        rss = rss_mb(stack.operator.pid) if stack.operator else 0.0

        def ok() -> bool:
            try:
                sdk.chat.completions.create(model="bench-model", messages=MESSAGES, max_tokens=12)  # type: ignore[arg-type]
                return True
            except openai.RateLimitError:
                return False

        edit_latencies: list[float] = []
        limit = 0.0002
        for _ in range(args.samples):
            while ok():  # spend the limit down until the gateway refuses
                pass
            limit += 0.0003
            started = time.monotonic()
            kube.apply(probe_budget(f"{limit:.6f}"))
            wait_for("the new limit enforced", ok, timeout=60, interval=0.05)
            edit_latencies.append(time.monotonic() - started)

        status_lags: list[float] = []
        kube.apply(probe_budget("1"))
        wait_for("raised", ok, timeout=60, interval=0.05)
        for _ in range(max(5, args.samples // 2)):
            before = kube.get_json("tb", "-n", "bench", "probe").get("status", {})
            spent_before = (before or {}).get("spentUSD")
            ok()
            started = time.monotonic()

            def shown(previous: object = spent_before) -> bool:
                status = kube.get_json("tb", "-n", "bench", "probe").get("status", {})
                return bool(status.get("spentUSD") != previous)

            wait_for(
                "status to show the spend", shown, timeout=args.sync_interval * 3 + 10, interval=0.1
            )
            status_lags.append(time.monotonic() - started)
            time.sleep(0.5)

        print()
        print(
            f"TokenBudgets: {args.budgets} in {args.namespaces} namespaces (+1 probe), "
            f"sync interval {args.sync_interval:g} s"
        )
        print(f"first full reconcile (start → every key Secret minted): {first:.1f} s")
        print(f"one reconcile of everything after an edit: {reconcile_seconds:.2f} s")
        print(f"operator RSS: {rss:.0f} MB")
        print(
            f"CR edit → gateway enforcing the new limit: p50 {percentile(edit_latencies, 50):.2f}"
            f" s, p95 {percentile(edit_latencies, 95):.2f} s (n={len(edit_latencies)})"
        )
        print(
            f"spend → status: p50 {percentile(status_lags, 50):.2f} s, p95 "
            f"{percentile(status_lags, 95):.2f} s (n={len(status_lags)}); mean "
            f"{statistics.mean(status_lags):.2f} s"
        )
    finally:
        stack.stop()
        stop_fake_provider(fake)
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
