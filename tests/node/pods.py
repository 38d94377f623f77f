"""Client Pods for the node tests: run tests/node/podclient.py in a team namespace with the
namespace's key Secret as `envFrom`, and read the JSON it prints."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Kube

CLIENT_SCRIPT = Path(__file__).with_name("podclient.py")
CLIENT_PYTHON = "/opt/client/bin/python"


class PodFailed(AssertionError):
    pass


class Pods:
    def __init__(self, kube: Kube, client_image: str) -> None:
        self.kube = kube
        self.client_image = client_image

    def _ensure_script(self, namespace: str) -> None:
        self.kube.apply(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "llmbudget-test-client", "namespace": namespace},
                    "data": {"podclient.py": CLIENT_SCRIPT.read_text()},
                }
            )
        )

    def start(self, namespace: str, key_secret: str, *args: str, name: str | None = None) -> str:
        """Start a client Pod (restartPolicy Never); returns its name."""
        self._ensure_script(namespace)
        name = name or f"client-{uuid.uuid4().hex[:8]}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "llmb-client"}},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "client",
                        "image": self.client_image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": [CLIENT_PYTHON, "/client/podclient.py", *args],
                        "envFrom": [{"secretRef": {"name": key_secret}}],
                        "volumeMounts": [{"name": "script", "mountPath": "/client"}],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
                "volumes": [{"name": "script", "configMap": {"name": "llmbudget-test-client"}}],
            },
        }
        self.kube.apply(yaml.safe_dump(pod))
        return name

    def result(self, namespace: str, name: str, timeout: float = 180) -> dict[str, Any]:
        """Wait for the Pod to finish; its JSON output (raises with its logs if it failed)."""
        deadline = time.monotonic() + timeout
        phase = ""
        while time.monotonic() < deadline:
            phase = self.kube.kubectl(
                "get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}"
            ).stdout
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.3)
        logs = self.kube.kubectl("logs", name, "-n", namespace, "-c", "client", check=False)
        if phase != "Succeeded":
            describe = self.kube.kubectl("describe", "pod", name, "-n", namespace, check=False)
            raise PodFailed(
                f"client Pod {namespace}/{name} {phase or 'did not finish'}:\n"
                f"{logs.stdout[-3000:]}{logs.stderr[-2000:]}\n{describe.stdout[-3000:]}"
            )
        lines = [line for line in logs.stdout.splitlines() if line.startswith("{")]
        self.kube.kubectl("delete", "pod", name, "-n", namespace, "--wait=false", check=False)
        return json.loads(lines[-1])  # type: ignore[no-any-return]

    def run(
        self, namespace: str, key_secret: str, *args: str, timeout: float = 180
    ) -> dict[str, Any]:
        return self.result(namespace, self.start(namespace, key_secret, *args), timeout)
