"""A real single-node Kubernetes cluster as local processes: the control plane of
localcluster.py plus kube-controller-manager, kube-scheduler, a kubelet on containerd + runc,
kube-proxy (iptables) and CoreDNS. No Docker, no image registry (../shared/NOTES.md §5).

The node's network is a Linux bridge with the node address; Pods get addresses from the CNI
bridge + host-local plugins; the Service CIDR is routed to the bridge so the host reaches
ClusterIPs too. CoreDNS runs as a host process on the node address (the kubelet's clusterDNS).

`stop()` leaves the host as it found it: processes, Pod sandboxes (CNI DEL), mounts, the
bridge, the route, iptables chains, sysctls and cgroups (tests/controlplane/hoststate.py), and
raises if anything is left. Only one node per machine at a time: the bridge, the CIDRs and the
chains are host-wide (nodelock.py holds a host-wide lock, and undoes nodes whose run was
killed). The configuration files are rendered by nodeconfig.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.controlplane.hoststate import HostState, Owner, restore
from tests.controlplane.images import PAUSE_IMAGE, write_single_file_image
from tests.controlplane.localcluster import Binaries, LocalControlPlane, NodeBinaries, free_port
from tests.controlplane.nodeconfig import (
    BRIDGE,
    CNI_BIN,
    CONTAINERD,
    COREDNS_RBAC,
    NODE,
    RUNC,
    SERVICE_CIDR,
    KubeletFiles,
    cni_conflist,
    containerd_config,
    corefile,
    kube_proxy_config,
    kubelet_config,
)
from tests.controlplane.nodelock import (
    HOST_STATE_FILE,
    WORKDIR_PREFIX,
    NodeLock,
    processes_under,
    recover_stale_nodes,
)

DEBIAN_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "nftables")
__all__ = ["NODE", "LocalNode", "missing_host_parts"]


def missing_host_parts() -> list[str]:
    """What this machine lacks to run a node (empty: it can)."""
    missing = [p for p in (CONTAINERD, RUNC, f"{CNI_BIN}/bridge") if not Path(p).exists()]
    missing += [b for b in ("iptables", "nft", "ip", "ctr") if shutil.which(b) is None]
    if os.geteuid() != 0:
        missing.append("root (the kubelet, containerd and the bridge need it)")
    return missing


@dataclass
class NodeTimings:
    start: float = 0.0
    stop: float = 0.0


@dataclass
class LocalNode:
    """etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy
    and CoreDNS on this machine, with one Ready node."""

    binaries: Binaries
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX)))
    timings: NodeTimings = field(default_factory=NodeTimings)
    plane: LocalControlPlane | None = None
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _before: HostState | None = None
    _lock: NodeLock = field(default_factory=NodeLock)

    @property
    def bins(self) -> NodeBinaries:
        assert self.binaries.node is not None, "build-binaries.sh ran with node binaries off"
        return self.binaries.node

    @property
    def kubeconfig(self) -> Path:
        assert self.plane is not None
        return self.plane.kubeconfig

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    # -- start -------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        missing = missing_host_parts()
        if missing:
            raise RuntimeError(
                f"cannot run a node here, missing: {', '.join(missing)} "
                f"(Debian packages: {' '.join(DEBIAN_PACKAGES)})"
            )
        started = time.monotonic()
        self._lock.acquire(self.workdir)  # NodeBusy if another node runs here
        try:
            left = recover_stale_nodes(self._lock, self.bins.crictl, BRIDGE)
        except BaseException:
            self._lock.release()
            raise
        if left:
            self._lock.release()
            raise RuntimeError(
                "a killed node's host state could not be restored:\n" + "\n".join(left)
            )
        self._before = HostState.capture()
        self._before.save(self.workdir / HOST_STATE_FILE)
        try:
            self._network()
            self._containerd()
            self.plane = LocalControlPlane(
                self.binaries, workdir=self.workdir / "control-plane", node=NODE,
                service_cidr=SERVICE_CIDR,
            )  # fmt: skip
            self.plane.workdir.mkdir(parents=True, exist_ok=True)
            self.plane.start(timeout)
            self.kubectl("apply", "-f", "-", stdin=COREDNS_RBAC)
            self._controllers()
            self._kubelet()
            self._kube_proxy()
            self._coredns()
            self._wait_ready(timeout)
        except BaseException:
            self.stop(check=False)
            raise
        self.timings.start = time.monotonic() - started

    def _run(self, *argv: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self._run(
            str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args, stdin=stdin
        )

    def _network(self) -> None:
        self._run("ip", "link", "add", BRIDGE, "type", "bridge")
        self._run("ip", "addr", "add", f"{NODE.address}/24", "dev", BRIDGE)
        self._run("ip", "link", "set", BRIDGE, "up")
        # ClusterIPs from the host: routed to the bridge, from the node address
        self._run("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE.address)
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True)
        (cni / "net.d" / "10-llmbudget.conflist").write_text(cni_conflist(cni / "ipam"))

    def _containerd(self) -> None:
        root = self.workdir / "containerd"
        root.mkdir()
        config = root / "config.toml"
        config.write_text(
            containerd_config(
                root, self.containerd_socket, self.workdir / "cni" / "net.d", PAUSE_IMAGE
            )
        )
        self._spawn("containerd", [CONTAINERD, f"--config={config}", "--log-level=warn"])
        deadline = time.monotonic() + 30
        while not self.containerd_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"containerd did not start:\n{self.logs_tail()}")
            time.sleep(0.1)
        archive = write_single_file_image(
            self.workdir / "pause.tar", self.bins.pause, "/pause", PAUSE_IMAGE
        )
        self.import_image(archive)

    def ctr(self, *args: str) -> str:
        return self._run("ctr", f"--address={self.containerd_socket}", "-n", "k8s.io", *args)

    def import_image(self, archive: Path) -> None:
        """Make an OCI archive's image available to the kubelet (no registry needed)."""
        self.ctr("images", "import", "--no-unpack", "--all-platforms", str(archive))

    def _component_kubeconfig(self, component: str) -> Path:
        assert self.plane is not None
        cert, key = self.plane.pki.components[component]
        return self.plane.write_kubeconfig(self.workdir / f"{component}.kubeconfig", cert, key)

    def _controllers(self) -> None:
        assert self.plane is not None
        pki = self.plane.pki
        kcm = self._component_kubeconfig("controller-manager")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bins.kube_controller_manager),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                "--controllers=*",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=0",
            ],
        )
        scheduler = self._component_kubeconfig("scheduler")
        self._spawn(
            "kube-scheduler",
            [
                str(self.bins.kube_scheduler),
                f"--kubeconfig={scheduler}",
                f"--authentication-kubeconfig={scheduler}",
                f"--authorization-kubeconfig={scheduler}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=0",
            ],
        )

    def _kubelet(self) -> None:
        assert self.plane is not None
        pki = self.plane.pki
        serving_cert, serving_key = pki.components["kubelet-serving"]
        resolv = self.workdir / "resolv.conf"
        resolv.write_text("")  # Pods resolve through CoreDNS only: no host DNS in Pods
        config = self.workdir / "kubelet.yaml"
        files = KubeletFiles(
            ca_cert=pki.ca_cert,
            serving_cert=serving_cert,
            serving_key=serving_key,
            resolv_conf=resolv,
            containerd_socket=self.containerd_socket,
            pod_logs=self.workdir / "pod-logs",
        )
        config.write_text(kubelet_config(files, free_port()))
        self._spawn(
            "kubelet",
            [
                str(self.bins.kubelet),
                f"--config={config}",
                f"--kubeconfig={self._component_kubeconfig('kubelet')}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--hostname-override={NODE.name}",
                f"--node-ip={NODE.address}",
                "--v=0",
            ],
        )

    def _kube_proxy(self) -> None:
        config = self.workdir / "kube-proxy.yaml"
        kubeconfig = self._component_kubeconfig("kube-proxy")
        config.write_text(kube_proxy_config(kubeconfig, free_port(), free_port()))
        self._spawn("kube-proxy", [str(self.bins.kube_proxy), f"--config={config}", "--v=0"])

    def _coredns(self) -> None:
        path = self.workdir / "Corefile"
        path.write_text(corefile(self._component_kubeconfig("coredns")))
        self._spawn("coredns", [str(self.bins.coredns), "-conf", str(path)])

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                node = json.loads(self.kubectl("get", "node", NODE.name, "-o", "json"))
                ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
                account = self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", "-o", "name"
                )
                if ready and ready[0]["status"] == "True" and account:
                    return
                last = json.dumps(ready)
            except RuntimeError as error:
                last = str(error)
            time.sleep(0.25)
        raise TimeoutError(f"node not Ready after {timeout}s: {last}\n{self.logs_tail()}")

    # -- processes ----------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        env = {**os.environ, "PATH": f"/usr/sbin:/usr/bin:/sbin:/bin:{CNI_BIN}"}
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        self._procs.append((name, proc))

    def _check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs_tail()}")

    def logs_tail(self, lines: int = 25) -> str:
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        if self.plane is not None:
            out.append(self.plane.logs_tail(lines))
        return "\n".join(out)

    def _terminate(self, name: str) -> None:
        for entry in [p for p in self._procs if p[0] == name]:
            proc = entry[1]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            self._procs.remove(entry)

    def _remove_pods(self) -> None:
        """Stop and remove every Pod sandbox through CRI: CNI DEL, unmounts, shims exit."""
        if not self.containerd_socket.exists():
            return
        crictl = [str(self.bins.crictl), f"--runtime-endpoint=unix://{self.containerd_socket}"]
        for _ in range(3):
            subprocess.run([*crictl, "rmp", "-af"], capture_output=True, check=False, timeout=120)
            left = subprocess.run(
                [*crictl, "pods", "-q"], capture_output=True, text=True, check=False, timeout=60
            )
            if not left.stdout.strip():
                return

    def _kill_shims(self) -> None:
        """containerd's runc shims outlive containerd: end the ones serving this node."""
        for pid, name in processes_under(self.workdir):
            if "containerd-shim" in name:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop(self, check: bool = True) -> list[str]:
        """Stop everything and restore the host; returns (or, with `check`, raises on) what
        could not be restored."""
        started = time.monotonic()
        self._terminate("kubelet")
        try:
            self._remove_pods()
        finally:
            for name in ("coredns", "kube-proxy", "kube-scheduler", "kube-controller-manager"):
                self._terminate(name)
            if self.plane is not None:
                self.plane.stop()
            self._terminate("containerd")
            self._kill_shims()
            subprocess.run(
                [str(self.bins.kube_proxy), "--cleanup"], capture_output=True, check=False
            )
        left: list[str] = []
        if self._before is not None:
            left = restore(self._before, Owner(self.workdir, BRIDGE))
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._lock.release()
        self.timings.stop = time.monotonic() - started
        if check and left:
            raise AssertionError("the node left host state behind:\n" + "\n".join(left))
        return left
