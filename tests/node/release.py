"""The chart installed on the node, as a user installs it: `helm install ... --wait`, then
everything through the cluster (kubectl, the gateway's Service, `kubectl exec` for the admin
API inside the gateway's own Pod)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO
from tests.node.cluster import NodeCluster

CHART = REPO / "helm" / "llmbudget"
EXAMPLES = REPO / "examples"
TEAM_NAMESPACES = ("marketing", "engineering", "data-science")

# Runs inside the gateway container (its Python): GET one admin API path, print the body.
ADMIN_GET = """
import sys, urllib.request
token = open("/etc/llmbudget/admin/token").read().strip()
request = urllib.request.Request("http://127.0.0.1:{port}" + sys.argv[1],
                                 headers={{"Authorization": "Bearer " + token}})
print(urllib.request.urlopen(request, timeout=30).read().decode())
"""


def wait_until(what: str, probe: Any, timeout: float = 60, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except AssertionError as error:
            last = error
        if last and not isinstance(last, AssertionError):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Release:
    cluster: NodeCluster
    name: str = "llmbudget"
    namespace: str = "llmbudget-system"
    values: dict[str, Any] = field(default_factory=dict)
    install_seconds: float = 0.0

    @property
    def kube(self) -> Any:
        return self.cluster.kube

    @property
    def gateway(self) -> str:
        return f"{self.name}-gateway"

    def base_values(self) -> dict[str, Any]:
        repository, tag = self.cluster.image.rsplit(":", 1)
        values: dict[str, Any] = {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
            "gateway": {"fakeUpstream": True, "reloadInterval": 1},
            "operator": {"syncInterval": 2},
            "networkPolicy": {"enabled": True},
        }
        if self.cluster.storage_class:
            values["gateway"]["ledger"] = {"storageClass": self.cluster.storage_class}
        return values

    def _values_file(self, values: dict[str, Any]) -> Path:
        merged = _merge(self.base_values(), values)
        path = self.cluster.workdir / f"values-{self.name}-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(merged))
        return path

    def install(self, values: dict[str, Any] | None = None) -> float:
        self.values = values or {}
        started = time.monotonic()
        self.kube.helm(
            "install", self.name, str(CHART), "-n", self.namespace, "--create-namespace",
            "-f", str(self._values_file(self.values)), "--wait", "--timeout", "5m",
        )  # fmt: skip
        self.install_seconds = time.monotonic() - started
        return self.install_seconds

    def upgrade(self, values: dict[str, Any]) -> float:
        self.values = _merge(self.values, values)
        started = time.monotonic()
        self.kube.helm(
            "upgrade", self.name, str(CHART), "-n", self.namespace,
            "-f", str(self._values_file(self.values)), "--wait", "--timeout", "5m",
        )  # fmt: skip
        return time.monotonic() - started

    def apply_examples(self) -> None:
        self.kube.kubectl("apply", "-f", str(EXAMPLES / "00-namespaces.yaml"))
        self.kube.kubectl("apply", "-f", str(EXAMPLES))

    def key_secret_ready(self, namespace: str, secret: str) -> bool:
        result = self.kube.kubectl(
            "get", "secret", secret, "-n", namespace, "-o", "jsonpath={.data.OPENAI_API_KEY}",
            check=False,
        )  # fmt: skip
        return result.returncode == 0 and bool(result.stdout)

    def config_revision(self) -> str:
        """The revision of the config the operator wrote (its Secret's annotation)."""
        secret = self.kube.get_json("secret", "llmbudget-gateway-config", "-n", self.namespace)
        return str(secret["metadata"]["annotations"]["llmbudget.io/config-revision"])

    def wait_config_loaded(self, timeout: float = 90) -> float:
        """Wait until every gateway Pod serves the operator's latest config (the kubelet
        updates the Secret volume on its sync, then the gateway reloads); returns seconds."""
        started = time.monotonic()

        def loaded() -> bool:
            revision = self.config_revision()
            pods = self.ready_gateway_pods()
            return bool(pods) and all(
                self.admin("/readyz", pod=p["metadata"]["name"]).get("configRevision") == revision
                for p in pods
            )

        wait_until("the gateway to load the operator's config", loaded, timeout=timeout)
        return time.monotonic() - started

    def gateway_pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/component=gateway,app.kubernetes.io/instance={self.name}"
        pods = self.kube.get_json("pods", "-n", self.namespace, "-l", selector)["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def ready_gateway_pods(self) -> list[dict[str, Any]]:
        return [
            pod
            for pod in self.gateway_pods()
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod.get("status", {}).get("conditions", [])
            )
        ]

    def admin(self, path: str, pod: str | None = None) -> Any:
        """GET an admin API path inside a gateway Pod (the token never leaves the cluster)."""
        target = pod or self.ready_gateway_pods()[0]["metadata"]["name"]
        port = self.values.get("gateway", {}).get("port", 8080)
        out = self.kube.kubectl(
            "exec", "-n", self.namespace, target, "-c", "gateway", "--",
            "python", "-c", ADMIN_GET.format(port=port), path,
        ).stdout  # fmt: skip
        return json.loads(out)

    def ledger_rows(self, namespace: str) -> list[dict[str, Any]]:
        """Every ledger row of a namespace, from the admin export."""
        text = self._admin_text(f"/admin/v1/export?format=json&namespace={namespace}")
        data = json.loads(text)
        rows: list[dict[str, Any]] = data["items"] if isinstance(data, dict) else data
        return rows

    def _admin_text(self, path: str) -> str:
        target = self.ready_gateway_pods()[0]["metadata"]["name"]
        port = self.values.get("gateway", {}).get("port", 8080)
        out: str = self.kube.kubectl(
            "exec", "-n", self.namespace, target, "-c", "gateway", "--",
            "python", "-c", ADMIN_GET.format(port=port), path,
        ).stdout  # fmt: skip
        return out

    def follow_gateway_logs(self) -> list[subprocess.Popen[bytes]]:
        """`kubectl logs -f` of every gateway Pod into the work directory (they outlive the
        Pods a rollout deletes); stop them with `stop_following`."""
        followers = []
        for pod in self.gateway_pods():
            name = pod["metadata"]["name"]
            out = (self.cluster.workdir / f"{name}.log").open("wb")
            argv = [str(self.kube.kubectl_path), f"--kubeconfig={self.kube.kubeconfig}"]
            argv += ["logs", "-f", "-n", self.namespace, name, "-c", "gateway"]
            followers.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))
        return followers

    def gateway_log_tails(self, lines: int = 15) -> str:
        tails = []
        for log in sorted(self.cluster.workdir.glob(f"{self.gateway}-*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(tails)

    def uninstall(self) -> None:
        for namespace in TEAM_NAMESPACES:
            self.kube.kubectl(
                "delete", "tokenbudgets,modelroutes", "--all", "-n", namespace, "--wait=true",
                "--timeout=60s", check=False,
            )  # fmt: skip
        self.kube.kubectl(
            "delete", "modelroutes", "--all", "-n", self.namespace, "--timeout=60s", check=False
        )
        self.kube.helm("uninstall", self.name, "-n", self.namespace, "--wait", check=False)
        # the ledger's claim is kept on uninstall (helm.sh/resource-policy: keep): drop it here
        self.kube.kubectl(
            "delete", "pvc", "--all", "-n", self.namespace, "--wait=false", check=False
        )
        for namespace in (*TEAM_NAMESPACES, self.namespace):
            self.kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        wait_until(
            "the namespaces to be gone",
            lambda: all(
                self.kube.kubectl("get", "namespace", ns, check=False).returncode != 0
                for ns in (*TEAM_NAMESPACES, self.namespace)
            ),
            timeout=120,
        )


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
