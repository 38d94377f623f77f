"""Shared fixtures. `kube` is a real Kubernetes API server (see tests/controlplane/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane.localcluster import LocalControlPlane, Timings, ensure_binaries
from tests.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "crds"
EXAMPLES = REPO / "examples"

_timings = Timings()
_timings_used = False


@dataclass(frozen=True)
class Kube:
    """kubectl against the test cluster."""

    kubeconfig: Path
    kubectl_path: Path
    helm_path: Path | None = None
    control_plane: LocalControlPlane | None = None  # None: an external cluster

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.helm_path is not None, "no helm binary (set HELM for external clusters)"
        result = subprocess.run(
            [str(self.helm_path), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", *extra, stdin=manifest)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """A real API server with the llmbudget CRDs installed and Established.

    Local etcd + kube-apiserver by default; LLMBUDGET_TEST_KUBECONFIG points the same tests at
    an existing cluster instead (kubectl from PATH, or KUBECTL).
    """
    global _timings_used
    external = os.environ.get("LLMBUDGET_TEST_KUBECONFIG")
    control_plane: LocalControlPlane | None = None
    if external:
        kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
        if not kubectl:
            pytest.fail("LLMBUDGET_TEST_KUBECONFIG is set but no kubectl on PATH (or KUBECTL)")
        helm = os.environ.get("HELM") or shutil.which("helm")
        cluster = Kube(Path(external), Path(kubectl), Path(helm) if helm else None)
    else:
        _timings_used = True
        binaries = ensure_binaries(_timings)
        control_plane = LocalControlPlane(binaries, timings=_timings)
        control_plane.start()
        cluster = Kube(control_plane.kubeconfig, binaries.kubectl, binaries.helm, control_plane)
    try:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/tokenbudgets.llmbudget.io",
            "crd/modelroutes.llmbudget.io",
        )
        yield cluster
    finally:
        if control_plane is not None:
            control_plane.stop()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _timings_used:
        return
    terminalreporter.section("local control plane")
    if _timings.build_output:
        terminalreporter.write_line(_timings.build_output)
    terminalreporter.write_line(
        f"binaries ready in {_timings.build:.1f} s (build or cache check); "
        f"etcd + kube-apiserver start to /readyz in {_timings.start:.1f} s; "
        f"stop in {_timings.stop:.1f} s"
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback, for the whole session."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """A fresh, empty database on the test server."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
