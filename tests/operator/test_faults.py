"""Faults around the control plane: the API server goes away for 60 s. The gateway keeps
serving on its last config; the operator survives, catches up on the spend and sends each
alert exactly once."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Kube
from tests.operator.stack import Receiver, Stack, wait_for
from tests.operator.test_e2e import accepted, apply_alerting_budget, chat, key_of, tb_row

OUTAGE_SECONDS = 60


@pytest.mark.cluster
def test_api_server_outage(kube: Kube, namespace: str, stack: Stack, receiver: Receiver) -> None:
    if kube.control_plane is None:
        pytest.skip("needs the local control plane: it stops and restarts the API server")
    # 1,100 micro-dollars a day
    apply_alerting_budget(kube, namespace, receiver, "outage", "0.0011")
    key = wait_for("the key", lambda: key_of(kube, namespace, "outage-default-key"))
    wait_for("the key to work", lambda: accepted(stack, key["OPENAI_API_KEY"]))

    def alerts() -> list[int]:
        return [
            a["threshold"]
            for a in receiver.received
            if a["namespace"] == namespace and a["budget"] == "outage"
        ]

    # The receiver holds its answer for 3 s, and the API server dies as soon as the 50 % alert
    # arrives: the operator delivered it but cannot record it (Event, status.alerted) until
    # the API server is back. It must then record it, not send it again.
    receiver.delay[0] = 3.0
    for _ in range(5):  # 550 micro-dollars: 50 %
        chat(stack, key["OPENAI_API_KEY"])
    wait_for("the 50 % alert", lambda: alerts() == [50] or None)

    assert kube.control_plane is not None
    kube.control_plane.stop_apiserver()
    receiver.delay[0] = 0.0
    down = time.monotonic()
    try:
        for _ in range(3):  # 880 micro-dollars: 80 %, crossing 75 % while the API is down
            chat(stack, key["OPENAI_API_KEY"])  # the gateway serves on its last config
        time.sleep(max(OUTAGE_SECONDS - (time.monotonic() - down), 0))
        assert stack.operator is not None and stack.operator.poll() is None  # no crash
        assert stack.gateway is not None and stack.gateway.poll() is None
        chat(stack, key["OPENAI_API_KEY"])  # still serving after 60 s: 990, 90 %
    finally:
        kube.control_plane.start_apiserver()

    def spend_shown() -> list[str] | None:
        row = tb_row(kube, namespace, "outage")
        return row if row[3] == "0.00099" else None

    row = wait_for("the spend in status", spend_shown, 60)
    assert row[5] == "90.0%"
    try:
        wait_for("the 75 % and 90 % alerts", lambda: sorted(alerts()) == [50, 75, 90] or None, 60)
    except AssertionError as error:
        raise AssertionError(f"{error}; alerts {alerts()}\n{stack.logs('operator')}") from None
    time.sleep(5 * stack.sync_interval)  # more syncs: nothing is sent again
    assert sorted(alerts()) == [50, 75, 90]
    assert stack.operator is not None and stack.operator.poll() is None
