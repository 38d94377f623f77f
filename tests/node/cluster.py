"""A cluster that runs Pods for the node tests and the Pods demo: a real single-node cluster,
the project's image built from its Dockerfile, and Pods that use it (tests/node/conftest.py
wraps it in fixtures; `examples/demo.py --pods` runs it directly).

By default the node is local processes (tests/controlplane/node.py) and the image is built
with buildah (tests/controlplane/images.py). With LLMBUDGET_TEST_KUBECONFIG the same tests run
against an existing cluster (kind, for people with Docker): then LLMBUDGET_TEST_IMAGE and
LLMBUDGET_TEST_CLIENT_IMAGE name images its nodes already have (`kind load docker-image`),
LLMBUDGET_TEST_HOST_ADDRESS is an address Pods reach the test machine at (for the PostgreSQL
server and the webhook receiver the tests run), and LLMBUDGET_TEST_STORAGE_CLASS a
StorageClass for the ledger's volume (default: the cluster's default class).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO, Kube
from tests.controlplane import images
from tests.controlplane.localcluster import Binaries, Timings, ensure_binaries
from tests.controlplane.node import NODE, LocalNode, missing_host_parts
from tests.node.pods import Pods

IMAGE = "llmbudget.local/llmbudget:test"
CLIENT_IMAGE = "llmbudget.local/llmbudget-testclient:test"
STORAGE_CLASS = "llmbudget-local"
IMAGE_CACHE = Path(os.environ.get("LLMBUDGET_BIN_CACHE", Path.home() / ".cache/llmbudget"))


class NodeUnavailable(RuntimeError):
    """This machine cannot run the node or build the images (the message says what lacks)."""


@dataclass
class NodeCluster:
    """A cluster that runs Pods, with the project's images available on its node."""

    kube: Kube
    node: LocalNode | None  # None: an external cluster
    image: str
    client_image: str
    host_address: str  # where Pods reach servers the tests run on this machine
    storage_class: str | None  # for the SQLite ledger's PersistentVolumeClaim
    workdir: Path
    figures: dict[str, str] = field(default_factory=dict)  # the run's summary ("real node")
    pods: Pods = field(init=False)

    def __post_init__(self) -> None:
        self.pods = Pods(self.kube, self.client_image)

    def figure(self, name: str, value: str) -> None:
        """Record a measured figure for the run's summary (install, faults ...)."""
        self.figures[name] = value

    def recycle_volumes(self) -> None:
        """Make the local volumes a deleted claim released bindable again (emptied)."""
        if self.node is None:
            return
        volumes = self.kube.get_json("pv")["items"]
        released = [v for v in volumes if v["status"].get("phase") == "Released"]
        for volume in released:
            path = Path(volume["spec"]["local"]["path"])
            self.kube.kubectl("delete", "pv", volume["metadata"]["name"], "--wait=true")
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        if released:
            self.kube.apply(local_storage_class(self.node.workdir))


@dataclass
class Builds:
    image_archive: Path
    client_archive: Path


def _build_images(workdir: Path, figure: Callable[[str, str], None]) -> Builds:
    missing = images.missing_build_tools()
    if missing:
        raise NodeUnavailable(
            f"cannot build images: {', '.join(missing)} not installed (.ci/run does)"
        )
    base, base_seconds = images.ensure_base_image(IMAGE_CACHE / "images")
    figure("base image (mmdebstrap)", f"{base_seconds:.0f} s" if base_seconds else "cached")
    archive = workdir / "llmbudget.tar"
    seconds, size = images.build_image(REPO, IMAGE, archive, base)
    figure("image build (buildah bud of Dockerfile)", f"{seconds:.0f} s")
    archive_mib = archive.stat().st_size / 2**20
    figure("image size", f"{size / 2**20:.0f} MiB uncompressed, {archive_mib:.0f} MiB archive")
    client = workdir / "client.tar"
    client_seconds, _ = images.build_image(
        REPO / "tests" / "node", CLIENT_IMAGE, client, base,
        dockerfile=REPO / "tests" / "node" / "client.Containerfile",
    )  # fmt: skip
    figure("test client image build", f"{client_seconds:.0f} s")
    return Builds(archive, client)


class NodeManager:
    """Starts the session's node on first use; `stop()` lets a test take the machine."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.figures: dict[str, str] = {}  # measured figures, for the run's summary
        self.cluster: NodeCluster | None = None
        self.builds: Builds | None = None

    def get(self) -> NodeCluster:
        if self.cluster is None:
            self.cluster = self._start()
        return self.cluster

    def _start(self) -> NodeCluster:
        external = os.environ.get("LLMBUDGET_TEST_KUBECONFIG")
        if external:
            kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
            helm = os.environ.get("HELM") or shutil.which("helm")
            needed = ["LLMBUDGET_TEST_IMAGE", "LLMBUDGET_TEST_CLIENT_IMAGE"]
            needed += ["LLMBUDGET_TEST_HOST_ADDRESS"]
            absent = [name for name in needed if not os.environ.get(name)]
            if absent or not kubectl or not helm:
                raise NodeUnavailable(
                    "node tests on an existing cluster need kubectl and helm on PATH and "
                    + ", ".join(absent or ["-"])
                )
            kube = Kube(Path(external), Path(kubectl), Path(helm))
            return NodeCluster(
                kube, None, os.environ["LLMBUDGET_TEST_IMAGE"],
                os.environ["LLMBUDGET_TEST_CLIENT_IMAGE"],
                os.environ["LLMBUDGET_TEST_HOST_ADDRESS"],
                os.environ.get("LLMBUDGET_TEST_STORAGE_CLASS"), self.tmp, self.figures,
            )  # fmt: skip
        missing = missing_host_parts()
        if missing:
            raise NodeUnavailable(
                f"cannot run a node here: missing {', '.join(missing)} (.ci/run installs)"
            )
        binaries = ensure_binaries_with_node()
        if self.builds is None:
            self.builds = _build_images(self.tmp, self.figures.__setitem__)
        node = LocalNode(binaries)
        node.start()
        self.figures["node start (etcd .. Node Ready)"] = f"{node.timings.start:.1f} s"
        started = time.monotonic()
        node.import_image(self.builds.image_archive)
        node.import_image(self.builds.client_archive)
        self.figures["image import into containerd"] = f"{time.monotonic() - started:.1f} s"
        kube = Kube(node.kubeconfig, binaries.kubectl, binaries.helm)
        kube.apply(local_storage_class(node.workdir))
        return NodeCluster(
            kube, node, IMAGE, CLIENT_IMAGE, NODE.address, STORAGE_CLASS, self.tmp, self.figures
        )

    def stop(self) -> list[str]:
        """Stop the node (if one runs here); returns what it could not restore."""
        left: list[str] = []
        if self.cluster is not None and self.cluster.node is not None:
            node = self.cluster.node
            left = node.stop(check=False)
            self.figures["node stop (and host restored)"] = f"{node.timings.stop:.1f} s"
        self.cluster = None
        return left


def ensure_binaries_with_node() -> Binaries:
    binaries = ensure_binaries(Timings())
    if binaries.node is None:
        raise NodeUnavailable(
            "build-binaries.sh ran without the node's binaries (LLMBUDGET_NODE_BINARIES=0)"
        )
    return binaries


def local_storage_class(workdir: Path, volumes: int = 4) -> str:
    """A StorageClass with statically provisioned `local` volumes on the node (a bare node has
    no provisioner). `local` volumes, unlike hostPath, get the Pod's fsGroup."""
    docs = [
        f"""apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {STORAGE_CLASS}}}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain"""
    ]
    for index in range(volumes):
        path = workdir / "volumes" / f"pv{index}"
        path.mkdir(parents=True, exist_ok=True)
        docs.append(f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: {STORAGE_CLASS}-{index}}}
spec:
  capacity: {{storage: 10Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: {STORAGE_CLASS}
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - {{key: kubernetes.io/hostname, operator: In, values: [{NODE.name}]}}""")
    return "\n---\n".join(docs)
