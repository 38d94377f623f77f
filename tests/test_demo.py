"""The README's main command: the one-command demo on a local control plane."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, REPO

pytestmark = pytest.mark.cluster


def test_demo_shows_real_spend_in_kubectl() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Sent 30 requests through the gateway with the minted keys." in out
    table = out[out.index("$ kubectl get tokenbudgets -A") :].splitlines()
    assert table[1].split() == [
        "NAMESPACE",
        "NAME",
        "LIMIT",
        "SPENT",
        "USED",
        "STATE",
        "RESETS",
        "AGE",
    ]
    rows = {line.split()[1]: line.split() for line in table[2:6]}
    assert set(rows) == {"data-science", "experiments", "engineering", "marketing"}
    for row in rows.values():
        assert row[5] == "USD" and float(row[4]) > 0  # real spend, priced in USD
