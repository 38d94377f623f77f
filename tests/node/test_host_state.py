"""A node started and stopped leaves the host as it found it.

Runs first among the node tests (tests/node/conftest.py orders it), on nodes of its own: it
starts one, makes it do what changes host state (a Pod with a Secret volume, a ClusterIP
Service whose rules kube-proxy writes), stops it, and compares the host with what it was
before: processes, mounts, links, routes, iptables rules and chains, nftables tables, sysctls,
cgroups and the paths the parts may create. Then the same for a node whose run is killed
(SIGKILL, no stop): the next node's start undoes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.controlplane.hoststate import HostState, diff
from tests.controlplane.node import LocalNode
from tests.node.cluster import NodeManager, ensure_binaries_with_node


def _node_processes(workdir: Path) -> list[str]:
    found = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(workdir) in cmdline and int(pid_dir.name) != os.getpid():
            found.append(f"{pid_dir.name}: {cmdline[:160]}")
    return found


def test_a_node_started_and_stopped_leaves_the_host_as_found(node_manager: NodeManager) -> None:
    if os.environ.get("LLMBUDGET_TEST_KUBECONFIG"):
        pytest.skip("checks the local node's host state; an existing cluster has none here")
    node_manager.stop()  # only one node per machine: take it
    binaries = ensure_binaries_with_node()
    before = HostState.capture()
    node = LocalNode(binaries)
    node.start()
    try:
        node.kubectl(
            "apply",
            "-f",
            "-",
            stdin=textwrap.dedent("""\
                apiVersion: v1
                kind: Secret
                metadata: {name: probe, namespace: default}
                stringData: {value: "42"}
                ---
                apiVersion: v1
                kind: Pod
                metadata: {name: probe, namespace: default, labels: {app: probe}}
                spec:
                  terminationGracePeriodSeconds: 1
                  containers:
                    - name: probe
                      image: llmbudget.local/pause:v1
                      volumeMounts: [{name: secret, mountPath: /secret}]
                  volumes: [{name: secret, secret: {secretName: probe}}]
                ---
                apiVersion: v1
                kind: Service
                metadata: {name: probe, namespace: default}
                spec:
                  selector: {app: probe}
                  ports: [{port: 80}]
                """),
        )
        node.kubectl("wait", "--for=condition=Ready", "pod/probe", "--timeout=60s")
        rules = "\n".join("\n".join(r) for r in HostState.capture().rules.values())
        assert "KUBE-SERVICES" in rules  # kube-proxy wrote its chains
        during = diff(before, HostState.capture())
        assert any(line.startswith("mount left") for line in during)  # the Secret volume
        assert any("link left: llmbudget0" in line for line in during)
    finally:
        left = node.stop(check=False)
    assert left == []
    assert diff(before, HostState.capture()) == []
    assert _node_processes(node.workdir) == []
    assert not node.workdir.exists()


KILLED_RUN = """
import sys, time
sys.path.append(sys.argv[1])
from tests.controlplane.localcluster import Timings, ensure_binaries
from tests.controlplane.node import LocalNode
node = LocalNode(ensure_binaries(Timings()))
node.start()
node.kubectl("run", "probe", "--image=llmbudget.local/pause:v1", "--restart=Never")
node.kubectl("wait", "--for=condition=Ready", "pod/probe", "--timeout=60s")
print(node.workdir, flush=True)
time.sleep(600)
"""


def test_a_killed_nodes_leftovers_are_undone_by_the_next_node(node_manager: NodeManager) -> None:
    if os.environ.get("LLMBUDGET_TEST_KUBECONFIG"):
        pytest.skip("checks the local node's host state; an existing cluster has none here")
    node_manager.stop()
    before = HostState.capture()
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(REPO)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )  # fmt: skip
    assert run.stdout is not None
    workdir = Path(run.stdout.readline().strip())
    run.kill()  # no stop(): kubelet, containerd, the Pod and the bridge stay behind
    run.wait()
    left_behind = diff(before, HostState.capture())
    assert any("link left: llmbudget0" in line for line in left_behind)
    assert _node_processes(workdir)
    node = LocalNode(ensure_binaries_with_node())
    node.start()  # takes the lock the killed run held, and undoes that run first
    try:
        assert _node_processes(workdir) == []
        assert not workdir.exists()
        assert node.kubectl("get", "node", "-o", "name").strip() == "node/llmbudget-node"
        with pytest.raises(RuntimeError, match="another test node runs on this machine"):
            LocalNode(ensure_binaries_with_node()).start()  # one node per machine
    finally:
        assert node.stop(check=False) == []
    assert diff(before, HostState.capture()) == []
