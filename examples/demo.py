"""One-command demo: a real Kubernetes control plane, the operator, the gateway, the examples.

    .venv/bin/python examples/demo.py          # processes beside a local API server
    .venv/bin/python examples/demo.py --pods   # the same story as Pods on a real node (root)

Starts etcd + kube-apiserver locally (the binaries of the test suite, built from the Go
module proxy on first use and cached in ~/.cache/llmbudget), installs the CRDs, runs the
operator and the gateway as local processes (the gateway with its built-in fake provider, so
no API key is needed), applies examples/, sends a burst of traffic with the openai SDK using
the keys the operator minted, and prints `kubectl get tb -A` with the real spend.

With --pods it runs the story where users run it: a single-node cluster (kubelet, containerd,
kube-proxy, CoreDNS; tests/controlplane/node.py), the image built from the Dockerfile with
buildah, `helm install --wait` of the chart (fake provider on), examples/ applied, and client
Pods in the team namespaces calling the gateway's Service with their key Secrets (envFrom).
It needs root and the Debian packages .ci/run installs; the host is restored at the end.
"""

from __future__ import annotations

import operator  # noqa: F401 - the standard library's, before the repo root joins sys.path
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import base64  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import openai  # noqa: E402

from tests.conftest import CRDS, EXAMPLES, Kube  # noqa: E402
from tests.controlplane.localcluster import LocalControlPlane, Timings, ensure_binaries  # noqa: E402
from tests.operator.stack import Stack, wait_for  # noqa: E402

TRAFFIC = [  # (namespace, key Secret, model, project, streamed)
    ("marketing", "marketing-default-key", "gpt-4.1", "launch", False),
    ("marketing", "marketing-default-key", "claude-sonnet-4.5", "launch", True),
    ("engineering", "engineering-ci-key", "deepseek-v3.2", "ci-bot", False),
    ("engineering", "engineering-dev-key", "auto", "copilot", True),
    ("data-science", "data-science-notebooks-key", "gemini-2.5-flash", "experiments", False),
    ("data-science", "data-science-notebooks-key", "gpt-4.1", "churn-model", False),
]


def key(kube: Kube, namespace: str, secret: str) -> str | None:
    result = kube.kubectl(
        "get",
        "secret",
        "-n",
        namespace,
        secret,
        "-o",
        "jsonpath={.data.OPENAI_API_KEY}",
        check=False,
    )
    return base64.b64decode(result.stdout).decode() if result.stdout else None


def on_pods() -> int:
    from tests.node.cluster import NodeManager
    from tests.node.release import Release, wait_until

    started = time.monotonic()
    print("Building the image and starting a single-node cluster...", flush=True)
    manager = NodeManager(Path(tempfile.mkdtemp(prefix="llmbudget-demo-")))
    try:
        cluster = manager.get()
        release = Release(cluster)
        print("helm install llmbudget helm/llmbudget --wait ...", flush=True)
        release.install()
        print(cluster.kube.kubectl("get", "pods", "-n", release.namespace).stdout, flush=True)
        release.apply_examples()
        keys = sorted({(namespace, secret) for namespace, secret, *_ in TRAFFIC})
        for namespace, secret in keys:
            wait_until(f"the key {namespace}/{secret}",
                       lambda n=namespace, s=secret: release.key_secret_ready(n, s))  # fmt: skip
        release.wait_config_loaded()
        sent = 0
        for namespace, secret, model, project, _ in TRAFFIC:
            cluster.pods.run(namespace, secret, "chat", "--model", model, "--project", project)
            sent += 2  # one plain, one streamed
        print(f"Client Pods sent {sent} requests through the gateway's Service.", flush=True)
        wait_until(
            "spend in every budget's status",
            lambda: all(
                (item.get("status") or {}).get("spentUSD") not in (None, "0", "0.00")
                for item in cluster.kube.get_json("tb", "-A")["items"]
                if item["metadata"]["name"] != "experiments"
            ),
            timeout=60,
        )
        print("\n$ kubectl get tokenbudgets -A")
        print(cluster.kube.kubectl("get", "tb", "-A").stdout)
        release.uninstall()
    finally:
        left = manager.stop()
    for name, value in manager.figures.items():
        print(f"  {name}: {value}")
    print(f"Done in {time.monotonic() - started:.0f} s; host restored: {not left}")
    return 0 if not left else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", action="store_true", help="run the story as Pods on a node")
    if parser.parse_args().pods:
        return on_pods()
    print("Starting a local Kubernetes control plane (etcd + kube-apiserver)...", flush=True)
    timings = Timings()
    binaries = ensure_binaries(timings)
    plane = LocalControlPlane(binaries)
    plane.start()
    kube = Kube(plane.kubeconfig, binaries.kubectl, binaries.helm)
    work = Path(tempfile.mkdtemp(prefix="llmbudget-demo-"))
    stack = Stack(
        kube, work, "llmbudget-system", sync_interval=1.0, gateway_args=("--fake-upstream",)
    )
    try:
        kube.kubectl("apply", "--server-side", "-f", str(CRDS))
        kube.kubectl("wait", "--for=condition=Established", "crd", "--all")
        kube.kubectl("apply", "-f", str(EXAMPLES / "00-namespaces.yaml"))
        print(kube.kubectl("apply", "-f", str(EXAMPLES)).stdout, flush=True)
        print("Starting the operator and the gateway...", flush=True)
        stack.start_operator()
        stack.start_gateway()
        sent = 0
        for namespace, secret, model, project, stream in TRAFFIC * 5:
            api_key = wait_for(
                f"the key {namespace}/{secret}",
                lambda ns=namespace, s=secret: key(kube, ns, s),
                timeout=60,
            )
            sdk = openai.OpenAI(
                base_url=f"{stack.gateway_url}/v1",
                api_key=api_key,
                default_headers={"X-Project": project},
                max_retries=5,
            )
            messages = [{"role": "user", "content": f"Summarise the {project} plan."}]
            if stream:
                for _ in sdk.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                ):
                    pass
            else:
                sdk.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
            sent += 1
        print(f"Sent {sent} requests through the gateway with the minted keys.", flush=True)
        time.sleep(0.5)
        wait_for(
            "spend in every budget's status",
            lambda: all(
                (item.get("status") or {}).get("spentUSD") not in (None, "0.00")
                for item in kube.get_json("tb", "-A")["items"]
                if item["metadata"]["name"] != "experiments"
            ),
            timeout=30,
        )
        print("\n$ kubectl get tokenbudgets -A")
        print(kube.kubectl("get", "tb", "-A").stdout)
        print("$ kubectl get modelroutes -A")
        print(kube.kubectl("get", "mr", "-A").stdout)
    finally:
        stack.stop()
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
