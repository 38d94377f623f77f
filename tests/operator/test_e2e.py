"""The operator and the gateway together on a real API server (issue #4's scenarios).

Every wait is on a condition (tests/operator/stack.py: wait_for), never a fixed sleep.
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Kube
from tests.operator.conftest import E2E_MODEL
from tests.operator.stack import Receiver, Stack, wait_for

pytestmark = pytest.mark.cluster
MESSAGES: list[Any] = [{"role": "user", "content": "count my tokens please"}]
# Through the fake provider one request costs 7 * $2/M + 12 * $8/M = 110 micro-dollars, and
# reserves 11 * $2/M + 12 * $8/M = 118 (tiktoken estimate of the prompt, max_tokens=12).


def budget(namespace: str, name: str, amount: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: llmbudget.io/v1alpha1
        kind: TokenBudget
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          limits:
            - {{period: Daily, amount: "{amount}"}}
          apiKeys:
            - name: default
        """) + textwrap.indent(textwrap.dedent(extra), "  ")


def key_of(kube: Kube, namespace: str, secret: str) -> dict[str, str] | None:
    result = kube.kubectl("get", "secret", "-n", namespace, secret, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def client(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=key, max_retries=0)


def accepted(stack: Stack, key: str) -> bool:
    return (
        httpx.get(
            f"{stack.gateway_url}/v1/models", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 200
    )


def chat(stack: Stack, key: str) -> None:
    client(stack, key).chat.completions.create(model=E2E_MODEL, messages=MESSAGES, max_tokens=12)


def tb_row(kube: Kube, namespace: str, name: str) -> list[str]:
    table = kube.kubectl("get", "tb", "-n", namespace, name).stdout.splitlines()
    return table[1].split()


def events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = kube.get_json(
        "events", "-n", namespace, f"--field-selector=involvedObject.name={name}"
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


def apply_alerting_budget(
    kube: Kube, namespace: str, receiver: Receiver, name: str, amount: str
) -> None:
    """A Daily budget whose alerts go to `receiver` (GenericJSON), with its URL Secret."""
    kube.apply(
        textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: hook, namespace: {namespace}}}
        stringData: {{url: "{receiver.url}"}}
        """)
    )
    hooks = """\
        alerts:
          webhooks:
            - {name: finops, format: GenericJSON, urlSecretRef: {name: hook}}
        """
    kube.apply(budget(namespace, name, amount, hooks))


def test_budget_lifecycle(kube: Kube, namespace: str, stack: Stack, receiver: Receiver) -> None:
    apply_alerting_budget(kube, namespace, receiver, "team", "0.00044")

    # 1. The key Secret appears, ready for envFrom, and the gateway accepts the key.
    secret = wait_for("the key Secret", lambda: key_of(kube, namespace, "team-default-key"))
    assert secret["OPENAI_BASE_URL"] == f"{stack.gateway_url}/v1"
    key = secret["OPENAI_API_KEY"]
    wait_for("the gateway to accept the key", lambda: accepted(stack, key))
    wait_for(
        "Ready=True",
        lambda: (
            kube.kubectl(
                "wait",
                "-n",
                namespace,
                "--for=condition=Ready",
                "tb/team",
                "--timeout=1s",
                check=False,
            ).returncode
            == 0
        ),
    )

    # 2. Requests are charged to the namespace; kubectl get tb shows the spend.
    chat(stack, key)
    chat(stack, key)

    def spend_shown() -> list[str] | None:
        row = tb_row(kube, namespace, "team")
        return row if row[3] == "0.00022" else None

    row = wait_for("spend in status", spend_shown)
    assert row[:7] == ["team", "0.00044", "USD/Daily", "0.00022", "USD", "50.0%", "Warning"]

    # 3. Crossing 50 % fires exactly one webhook and one Event; a restart does not resend.
    first = wait_for("the 50 % webhook", lambda: receiver.received)
    assert [(a["budget"], a["threshold"]) for a in first] == [("team", 50)]
    assert first[0]["namespace"] == namespace and first[0]["spent"] == "0.00022 USD"
    wait_for(
        "the 50 % Event",
        lambda: [e for e in events(kube, namespace, "team") if e["reason"] == "ThresholdCrossed"],
    )
    stack.stop_operator()
    stack.start_operator()
    syncs_before = 0
    wait_for(
        "two usage syncs after the restart",
        lambda: (h := stack.operator_health()) is not None and h["usageSyncs"] >= syncs_before + 2,
    )
    assert len(receiver.received) == 1
    assert (
        len([e for e in events(kube, namespace, "team") if e["reason"] == "ThresholdCrossed"]) == 1
    )

    # 4. At 100 % the gateway answers 429 and the status says Exceeded.
    chat(stack, key)  # 75 %
    with pytest.raises(openai.RateLimitError, match=f"TokenBudget {namespace}/team"):
        chat(stack, key)
    wait_for("Exceeded", lambda: tb_row(kube, namespace, "team")[6] == "Exceeded")
    wait_for("the 75 % and 100 % webhooks", lambda: len(receiver.received) == 3)
    assert [a["threshold"] for a in receiver.received] == [50, 75, 100]
    wait_for(
        "the BudgetExceeded Warning",
        lambda: [
            e
            for e in events(kube, namespace, "team")
            if e["reason"] == "BudgetExceeded" and e["type"] == "Warning"
        ],
    )
    status = kube.get_json("tb", "-n", namespace, "team")["status"]
    assert status["alerted"][0]["thresholds"] == [50, 75, 100]

    # 5. Raising the limit in the CR (a GitOps commit) lifts the block within seconds.
    started = time.monotonic()
    apply_alerting_budget(kube, namespace, receiver, "team", "1")

    def unblocked() -> bool:
        try:
            chat(stack, key)
            return True
        except openai.RateLimitError:
            return False

    wait_for("the raised limit to apply", unblocked, timeout=15, interval=0.2)
    assert time.monotonic() - started < 15


def test_invalid_reference_is_ready_false_and_deletion_revokes(
    kube: Kube, namespace: str, stack: Stack
) -> None:
    kube.apply(
        budget(
            namespace,
            "broken",
            "1",
            """\
        onExceeded: {action: Downgrade, downgradeTo: no-such-model}
        """,
        )
    )
    condition = wait_for(
        "Ready=False",
        lambda: next(
            (
                c
                for c in (kube.get_json("tb", "-n", namespace, "broken").get("status") or {}).get(
                    "conditions", []
                )
                if c["type"] == "Ready" and c["status"] == "False"
            ),
            None,
        ),
    )
    assert condition["reason"] == "DowngradeTargetNotFound"
    assert "no-such-model" in condition["message"]
    wait_for(
        "a Warning Event",
        lambda: [
            e for e in events(kube, namespace, "broken") if e["reason"] == "DowngradeTargetNotFound"
        ],
    )
    wide = kube.kubectl("get", "tb", "-n", namespace, "broken", "-o", "wide").stdout
    assert "no-such-model" in wide
    # Still enforced (as Block), and its key works.
    key = wait_for("the key", lambda: key_of(kube, namespace, "broken-default-key"))
    wait_for("the key to work", lambda: accepted(stack, key["OPENAI_API_KEY"]))

    kube.kubectl("delete", "tb", "-n", namespace, "broken")
    wait_for("the key to be revoked", lambda: not accepted(stack, key["OPENAI_API_KEY"]))
    wait_for(
        "the key Secret to be deleted",
        lambda: key_of(kube, namespace, "broken-default-key") is None,
    )


def test_modelroute_status_and_secret_changes(
    kube: Kube, namespace: str, stack: Stack, provider: Any
) -> None:
    kube.apply(
        textwrap.dedent(f"""\
        apiVersion: llmbudget.io/v1alpha1
        kind: ModelRoute
        metadata: {{name: private, namespace: {namespace}}}
        spec:
          model: private-llm
          backends:
            - name: main
              provider: OpenAI
              baseURL: {provider.url}
              credentialSecretRef: {{name: creds}}
        """)
    )
    wait_for(
        "SecretNotFound",
        lambda: (
            (
                r := kube.kubectl("get", "mr", "-n", namespace, "private")
                .stdout.splitlines()[1]
                .split()
            )[2:4]
            == ["0/1", "False"]
            and r
        ),
    )
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        namespace,
        "--from-literal=apiKey=sk-provider-secret",
    )
    wait_for(
        "the route to resolve",
        lambda: (
            kube.kubectl("get", "mr", "-n", namespace, "private")
            .stdout.splitlines()[1]
            .split()[2:4]
            == ["1/1", "True"]
        ),
    )
    status = kube.get_json("mr", "-n", namespace, "private")["status"]
    assert status["backends"] == [{"name": "main", "ready": True}]
    # The provider key never reaches status, Events or the operator's log.
    assert "sk-provider-secret" not in json.dumps(status)
    assert "sk-provider-secret" not in json.dumps(events(kube, namespace, "private"))
    assert "sk-provider-secret" not in stack.logs("operator")


def test_key_rotation_keeps_the_old_key_for_the_grace_period(
    kube: Kube, namespace: str, stack: Stack
) -> None:
    kube.apply(
        budget(
            namespace,
            "rotating",
            "1",
            """\
        """,
        ).replace(
            "    - name: default\n", "    - name: default\n      rotation: {gracePeriod: 1h}\n"
        )
    )
    old = wait_for("the key", lambda: key_of(kube, namespace, "rotating-default-key"))
    wait_for("the old key to work", lambda: accepted(stack, old["OPENAI_API_KEY"]))
    kube.kubectl("annotate", "tb", "-n", namespace, "rotating", "llmbudget.io/rotate-keys=1")

    def rotated() -> dict[str, str] | None:
        found = key_of(kube, namespace, "rotating-default-key")
        return found if found and found["OPENAI_API_KEY"] != old["OPENAI_API_KEY"] else None

    new = wait_for("a new key", rotated)
    wait_for("the new key to work", lambda: accepted(stack, new["OPENAI_API_KEY"]))
    assert accepted(stack, old["OPENAI_API_KEY"])  # still valid during the grace period


def test_breaker_open_shows_in_status_and_events(kube: Kube, namespace: str, stack: Stack) -> None:
    kube.apply(
        budget(
            namespace,
            "loop",
            "1",
            """\
        circuitBreaker: {tokensPerHour: 30, cooldown: 10m}
        """,
        )
    )
    key = wait_for("the key", lambda: key_of(kube, namespace, "loop-default-key"))
    wait_for("the key to work", lambda: accepted(stack, key["OPENAI_API_KEY"]))
    chat(stack, key["OPENAI_API_KEY"])  # 19 tokens
    chat(stack, key["OPENAI_API_KEY"])  # 38 >= 30: the breaker opens
    with pytest.raises(openai.RateLimitError, match="circuit breaker"):
        chat(stack, key["OPENAI_API_KEY"])
    wait_for("BreakerOpen in status", lambda: tb_row(kube, namespace, "loop")[6] == "BreakerOpen")
    event = wait_for(
        "the BreakerOpen Warning",
        lambda: [e for e in events(kube, namespace, "loop") if e["reason"] == "BreakerOpen"],
    )
    assert event[0]["type"] == "Warning"
    status = kube.get_json("tb", "-n", namespace, "loop")["status"]
    assert status["breaker"]["state"] == "Open" and status["breaker"]["tokensLastHour"] == 38
