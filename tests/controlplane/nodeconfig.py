"""The test node's configuration files, rendered by pure functions (no I/O): containerd,
CNI, kubelet, kube-proxy and CoreDNS, with the settings this kernel and cgroup layout need
(../shared/NOTES.md §5, docs/node.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.controlplane.pki import NodeIdentity

NODE = NodeIdentity(name="llmbudget-node", address="10.244.0.1")
BRIDGE = "llmbudget0"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.0.0.0/24"
CONTAINERD = "/usr/bin/containerd"
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"

COREDNS_RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "llmbudget-test:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "llmbudget-test:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "llmbudget-test:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
"""


def cni_conflist(ipam_dir: Path) -> str:
    """Bridge + host-local: Pods on BRIDGE, addresses from POD_CIDR, the node as gateway."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "llmbudget",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # Pods need no way out
                    "hairpinMode": True,  # a Pod reaching itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE.address}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(ipam_dir),  # not the host's /var/lib/cni
                    },
                }
            ],
        },
        indent=2,
    )


def containerd_config(root: Path, socket: Path, cni_conf_dir: Path, sandbox_image: str) -> str:
    """containerd 1.6 with its own root, state and socket under `root`."""
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.grpc.v1.introspection.v1"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{root / "containerd.ttrpc.sock"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # the kubelet asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE (absent here)
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf_dir}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
"""


@dataclass(frozen=True)
class KubeletFiles:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    resolv_conf: Path
    containerd_socket: Path
    pod_logs: Path


def kubelet_config(files: KubeletFiles, healthz_port: int) -> str:
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE.address,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(files.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(files.serving_cert),
            "tlsPrivateKeyFile": str(files.serving_key),
            "failCgroupV1": False,  # 1.35 refuses cgroup v1 otherwise
            "cgroupDriver": "cgroupfs",
            "oomScoreAdj": 0,
            "syncFrequency": "10s",  # Secret volume updates show in ~2-13 s
            "clusterDomain": "cluster.local",
            "clusterDNS": [NODE.address],
            "resolvConf": str(files.resolv_conf),
            "containerRuntimeEndpoint": f"unix://{files.containerd_socket}",
            "podLogsDir": str(files.pod_logs),
            "failSwapOn": False,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "maxPods": 60,
        }
    )


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> str:
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": NODE.name,
            "bindAddress": NODE.address,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"127.0.0.1:{healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            # zeros: leave the host's conntrack sysctls alone
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False},
        }
    )


def corefile(kubeconfig: Path) -> str:
    """CoreDNS on the node address, answering cluster.local from the API server."""
    return f""".:53 {{
    bind {NODE.address}
    errors
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa
    }}
    cache 30
}}
"""
