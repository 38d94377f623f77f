"""A real Kubernetes control plane as two local processes: etcd and kube-apiserver.

This is the "envtest" pattern: no kubelet, no controller-manager, no container engine. The API
server is real (OpenAPI + CEL validation, status subresources, printer columns, watches, RBAC);
nothing runs pods, so Deployments never become Ready and ownerReference garbage collection
never happens. The cheap fixture of the API-only tests.

With `node=NodeIdentity(...)` the same API server is set up to serve a real node
(tests/controlplane/node.py): it listens on every address and advertises the node's, authorizes
kubelets (Node,RBAC + NodeRestriction), mints ServiceAccount tokens and reaches the kubelet.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.controlplane.pki import NodeIdentity, Pki, make_pki

BUILD_SCRIPT = Path(__file__).with_name("build-binaries.sh")


@dataclass(frozen=True)
class NodeBinaries:
    """The node's binaries from build-binaries.sh (containerd, runc and CNI are Debian's)."""

    kubelet: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kube_proxy: Path
    crictl: Path
    coredns: Path
    pause: Path


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    helm: Path
    node: NodeBinaries | None = None  # None when built with LLMBUDGET_NODE_BINARIES=0


@dataclass
class Timings:
    """Seconds spent on each step; printed at the end of the test run."""

    build: float = 0.0
    start: float = 0.0
    stop: float = 0.0
    build_output: str = ""


def ensure_binaries(timings: Timings) -> Binaries:
    """Build (or reuse from the cache) etcd, kube-apiserver and kubectl."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    timings.build = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"{BUILD_SCRIPT} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    paths = dict(line.split("=", 1) for line in result.stdout.splitlines() if line.count("=") == 1)
    timings.build_output = "\n".join(
        line for line in result.stdout.splitlines() if line.startswith("control-plane:")
    )
    node = None
    if "KUBELET" in paths:
        node = NodeBinaries(
            kubelet=Path(paths["KUBELET"]),
            kube_controller_manager=Path(paths["KUBE_CONTROLLER_MANAGER"]),
            kube_scheduler=Path(paths["KUBE_SCHEDULER"]),
            kube_proxy=Path(paths["KUBE_PROXY"]),
            crictl=Path(paths["CRICTL"]),
            coredns=Path(paths["COREDNS"]),
            pause=Path(paths["PAUSE"]),
        )
    return Binaries(
        etcd=Path(paths["ETCD"]),
        kube_apiserver=Path(paths["KUBE_APISERVER"]),
        kubectl=Path(paths["KUBECTL"]),
        helm=Path(paths["HELM"]),
        node=node,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalControlPlane:
    binaries: Binaries
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="llmbudget-cp-")))
    timings: Timings = field(default_factory=Timings)
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    api_port: int = 0
    _pki: Pki | None = None
    _etcd_port: int = 0
    node: NodeIdentity | None = None  # None: API server only
    service_cidr: str = "10.0.0.0/24"

    @property
    def pki(self) -> Pki:
        assert self._pki is not None, "start() first"
        return self._pki

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 120.0) -> None:
        started = time.monotonic()
        pki = make_pki(self.workdir / "pki", node=self.node)
        etcd_client, etcd_peer = free_port(), free_port()
        self.api_port = free_port()
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        self._pki, self._etcd_port = pki, etcd_client
        self._spawn("kube-apiserver", self._apiserver_args(pki, etcd_client))
        self._write_kubeconfig(pki)
        self._wait_ready(pki, timeout)
        self.timings.start = time.monotonic() - started

    def stop_apiserver(self) -> None:
        """Take the API server away, as a crash would (etcd keeps the data): open watches
        break and new connections are refused."""
        for name, proc in list(self._procs):
            if name == "kube-apiserver":
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                self._procs.remove((name, proc))

    def start_apiserver(self, timeout: float = 120.0) -> None:
        """Bring the API server back on the same port, certificates and etcd."""
        assert self._pki is not None, "start() first"
        self._spawn("kube-apiserver", self._apiserver_args(self._pki, self._etcd_port))
        self._wait_ready(self._pki, timeout)

    def _apiserver_args(self, pki: Pki, etcd_port: int) -> list[str]:
        if self.node is None:
            placement = [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
            ]
        else:
            kubelet_cert, kubelet_key = pki.components["apiserver-kubelet"]
            placement = [
                "--bind-address=0.0.0.0",  # Pods reach it at the node address
                f"--advertise-address={self.node.address}",  # Service `kubernetes` -> here
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--kubelet-client-certificate={kubelet_cert}",
                f"--kubelet-client-key={kubelet_key}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={self.api_port}",
            *placement,
            f"--service-cluster-ip-range={self.service_cidr}",
            f"--client-ca-file={pki.ca_cert}",
            f"--tls-cert-file={pki.server_cert}",
            f"--tls-private-key-file={pki.server_key}",
            f"--service-account-issuer=https://127.0.0.1:{self.api_port}/",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--allow-privileged=true",
            "--v=0",
        ]

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._procs.append((name, proc))

    def _write_kubeconfig(self, pki: Pki) -> None:
        self.write_kubeconfig(self.kubeconfig, pki.admin_cert, pki.admin_key)

    def write_kubeconfig(self, path: Path, cert: Path, key: Path) -> Path:
        """A kubeconfig for the client certificate `cert` (an admin or a node component)."""
        path.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: llmbudget-test
  cluster:
    server: {self.server_url}
    certificate-authority: {self.pki.ca_cert}
users:
- name: user
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: llmbudget-test
  context:
    cluster: llmbudget-test
    user: user
current-context: llmbudget-test
"""
        )
        return path

    def _wait_ready(self, pki: Pki, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}; "
                        f"logs in {self.workdir}:\n{self.logs_tail()}"
                    )
            try:
                with urllib.request.urlopen(  # noqa: S310 - a local https URL we built
                    f"{self.server_url}/readyz", context=context, timeout=5
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise TimeoutError(
            f"kube-apiserver not ready after {timeout}s: {last_error}\n{self.logs_tail()}"
        )

    def logs_tail(self, lines: int = 30) -> str:
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self) -> None:
        started = time.monotonic()
        for _, proc in reversed(self._procs):  # API server first, then etcd
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self._procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.timings.stop = time.monotonic() - started
