"""The image built from the Dockerfile, run as a Pod: both entrypoints start as UID 10001 on a
read-only root filesystem, and the tokenizer works offline (Pods here have no way out)."""

from __future__ import annotations

import textwrap
import time

import yaml

from tests.node.cluster import NodeCluster

PROBE = textwrap.dedent("""\
    import json, os, subprocess, tiktoken
    out = {"uid": os.getuid(), "gid": os.getgid()}
    for command in ("llmbudget-gateway", "llmbudget-operator"):
        done = subprocess.run([command, "--help"], capture_output=True, text=True)
        out[command] = done.returncode == 0 and "usage:" in done.stdout
    out["tokens"] = len(tiktoken.get_encoding("o200k_base").encode("Budgets keep teams honest"))
    out["cache"] = os.environ.get("TIKTOKEN_CACHE_DIR")
    try:
        open("/probe", "w")
        out["root_writable"] = True
    except OSError:
        out["root_writable"] = False
    print(json.dumps(out))
    """)


def test_image_runs_both_entrypoints_as_10001_with_the_offline_tokenizer(
    node_cluster: NodeCluster,
) -> None:
    kube = node_cluster.kube
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "image-probe", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": node_cluster.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", PROBE],  # the image's USER, not ours
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    kube.apply(yaml.safe_dump(pod))
    try:
        deadline = time.monotonic() + 120
        phase = ""
        while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
            time.sleep(0.3)
            phase = kube.kubectl(
                "get", "pod", "image-probe", "-o", "jsonpath={.status.phase}"
            ).stdout
        logs = kube.kubectl("logs", "image-probe").stdout
        assert phase == "Succeeded", logs
        out = yaml.safe_load(logs.strip().splitlines()[-1])
        assert out.pop("tokens") > 0  # encoded: the cache was there (no egress to fetch it)
        assert out == {
            "uid": 10001,
            "gid": 10001,
            "llmbudget-gateway": True,
            "llmbudget-operator": True,
            "cache": "/opt/tiktoken",
            "root_writable": False,
        }
    finally:
        kube.kubectl("delete", "pod", "image-probe", "--wait=false", check=False)
