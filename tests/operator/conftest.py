"""Fixtures for the operator's end-to-end tests on the real control plane."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Kube
from tests.gateway.harness import FakeProvider, start_fake_provider, stop_fake_provider
from tests.operator.stack import Receiver, Stack

E2E_MODEL = "e2e-gpt"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    fake = start_fake_provider()
    yield fake
    stop_fake_provider(fake)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hook = Receiver.start()
    yield hook
    hook.stop()


RBAC = Path(__file__).resolve().parents[2] / "operator" / "rbac.yaml"


def service_account_kubeconfig(kube: Kube, namespace: str, workdir: Path) -> Path:
    """Apply operator/rbac.yaml for a ServiceAccount in `namespace` and return a kubeconfig
    that authenticates as it: the operator runs with exactly the permissions it ships with."""
    manifest = RBAC.read_text().replace("namespace: llmbudget-system", f"namespace: {namespace}")
    kube.apply(manifest.replace("llmbudget-operator", f"llmbudget-operator-{namespace}"))
    token = kube.kubectl(
        "create", "token", f"llmbudget-operator-{namespace}", "-n", namespace, "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    path = workdir / "operator-kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "operator",
                        "context": {"cluster": cluster["name"], "user": "operator"},
                    }
                ],
                "current-context": "operator",
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def stack(
    kube: Kube, provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Operator + gateway, with a shared ModelRoute `e2e-gpt` ($2/$8 per M) to the fake."""
    gateway_ns = f"llmb-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", gateway_ns)
    kube.apply(
        textwrap.dedent(f"""\
        apiVersion: llmbudget.io/v1alpha1
        kind: ModelRoute
        metadata: {{name: e2e-gpt, namespace: {gateway_ns}}}
        spec:
          model: {E2E_MODEL}
          backends:
            - name: fake
              provider: OpenAI
              baseURL: {provider.url}
              pricing: {{input: "2", output: "8"}}
        """)
    )
    workdir = Path(tmp_path_factory.mktemp("stack"))
    operator_kubeconfig = service_account_kubeconfig(kube, gateway_ns, workdir)
    system = Stack(kube, workdir, gateway_ns, operator_kubeconfig=operator_kubeconfig)
    try:
        system.start_operator()
        system.start_gateway()
        yield system
    except BaseException:
        print(system.logs("operator"), system.logs("gateway"))
        raise
    finally:
        system.stop()
        kube.kubectl("delete", "namespace", gateway_ns, "--wait=false", check=False)
