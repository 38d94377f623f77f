"""The README's demo on Pods: `examples/demo.py --pods` runs the whole story on a node of its
own (runs last among the node tests: one node per machine) and restores the host."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from tests.conftest import EXAMPLES, REPO
from tests.node.cluster import NodeManager


def test_demo_on_pods_shows_real_spend_in_kubectl(node_manager: NodeManager) -> None:
    if os.environ.get("LLMBUDGET_TEST_KUBECONFIG"):
        pytest.skip("the Pods demo brings its own local node")
    node_manager.stop()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--pods"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )
    seconds = time.monotonic() - started
    node_manager.figures["examples/demo.py --pods (binaries and base cached)"] = f"{seconds:.0f} s"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Client Pods sent 12 requests through the gateway's Service." in out
    table = out[out.index("$ kubectl get tokenbudgets -A") :].splitlines()[1:6]
    rows = {tuple(line.split()[:2]): line.split() for line in table[1:] if line.strip()}
    for budget in ("marketing", "engineering", "data-science"):
        row = rows[(budget, budget)]
        assert Decimal(row[4]) > 0, row  # SPENT, from the ledger, in status
    assert "host restored: True" in out
