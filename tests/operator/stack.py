"""The whole system on the real control plane: operator + gateway processes, a fake provider,
a webhook receiver, and a "kubelet" that mirrors the config Secret into the gateway's mount."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiohttp import web

from tests.conftest import Kube
from tests.gateway.harness import LoopThread, free_port

BIN = Path(sys.executable).parent
ADMIN_TOKEN = "e2e-admin-token"
T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1
) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as error:  # transient while things start
            last = error
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Receiver:
    """A webhook receiver on loopback that records every JSON body it gets."""

    loop: LoopThread
    runner: web.AppRunner
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    # seconds to hold each answer after recording the body (a slow receiver)
    delay: list[float] = field(default_factory=lambda: [0.0])

    @classmethod
    def start(cls, host: str = "127.0.0.1") -> Receiver:
        """Listen on `host` (loopback; the node's address for Pods to reach it)."""
        loop = LoopThread()
        received: list[dict[str, Any]] = []
        delay = [0.0]

        async def hook(request: web.Request) -> web.Response:
            received.append(await request.json())
            await asyncio.sleep(delay[0])
            return web.Response(text="ok")

        async def setup() -> tuple[web.AppRunner, int]:
            app = web.Application()
            app.router.add_post("/hook", hook)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, host, 0)
            await site.start()
            return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        runner, port = loop.run(setup())
        return cls(loop, runner, f"http://{host}:{port}/hook", received, delay)

    def stop(self) -> None:
        self.loop.run(self.runner.cleanup())
        self.loop.stop()


@dataclass
class Stack:
    kube: Kube
    workdir: Path
    gateway_namespace: str
    operator_kubeconfig: Path | None = None  # default: the admin kubeconfig
    gateway_args: tuple[str, ...] = ()
    sync_interval: float = 1.0
    gateway_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    liveness_port: int = field(default_factory=free_port)
    operator: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    _mirror_stop: threading.Event = field(default_factory=threading.Event)
    _mirror: threading.Thread | None = None

    @property
    def mount(self) -> Path:
        return self.workdir / "mount"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.operator_kubeconfig or self.kube.kubeconfig),
            "LLMBUDGET_GATEWAY_NAMESPACE": self.gateway_namespace,
            "LLMBUDGET_GATEWAY_PUBLIC_URL": f"{self.gateway_url}/v1",
            "LLMBUDGET_GATEWAY_ADMIN_URL": self.gateway_url,
            "LLMBUDGET_ADMIN_TOKEN": ADMIN_TOKEN,
            "LLMBUDGET_SYNC_INTERVAL": str(self.sync_interval),
        }

    def start_operator(self) -> None:
        log = (self.workdir / "operator.log").open("ab")
        self.operator = subprocess.Popen(
            [
                str(BIN / "llmbudget-operator"),
                "--liveness",
                f"http://127.0.0.1:{self.liveness_port}/healthz",
            ],
            env=self.env(),
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for("operator liveness", self.operator_health, timeout=60)

    def operator_health(self) -> dict[str, Any] | None:
        if self.operator is not None and self.operator.poll() is not None:
            raise AssertionError(f"operator exited: {self.logs('operator')}")
        response = httpx.get(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2)
        if response.status_code != 200:
            return None
        data: dict[str, Any] = response.json()
        return data.get("reconciler") or None

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.terminate()
            self.operator.wait(30)
            self.operator = None

    def config_from_secret(self) -> bytes | None:
        result = self.kube.kubectl(
            "get",
            "secret",
            "-n",
            self.gateway_namespace,
            "llmbudget-gateway-config",
            "-o",
            "jsonpath={.data.config\\.json}",
            check=False,
        )
        if result.returncode != 0 or not result.stdout:
            return None
        return base64.b64decode(result.stdout)

    def _mirror_loop(self) -> None:
        target = self.mount / "config.json"
        while not self._mirror_stop.is_set():
            data = self.config_from_secret()
            if data is not None and (not target.exists() or target.read_bytes() != data):
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.replace(target)  # atomic, like the kubelet's symlink swap
            self._mirror_stop.wait(0.2)

    def start_gateway(self) -> None:
        self.mount.mkdir(parents=True, exist_ok=True)
        wait_for("the operator's config Secret", self.config_from_secret, timeout=60)
        self._mirror = threading.Thread(target=self._mirror_loop, daemon=True)
        self._mirror.start()
        wait_for("the mirrored config", lambda: (self.mount / "config.json").exists())
        log = (self.workdir / "gateway.log").open("ab")
        self.gateway = subprocess.Popen(
            [
                str(BIN / "llmbudget-gateway"),
                "serve",
                str(self.mount),
                "--port",
                str(self.gateway_port),
                "--metrics-port",
                str(self.metrics_port),
                "--state-dir",
                str(self.workdir / "state"),
                "--reload-interval",
                "0.2",
                "--log-level",
                "warning",
                *self.gateway_args,
            ],
            env={**os.environ, "LLMBUDGET_ADMIN_TOKEN": ADMIN_TOKEN},
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            "gateway readiness", lambda: httpx.get(f"{self.gateway_url}/readyz").status_code == 200
        )

    def logs(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        self._mirror_stop.set()
        if self._mirror is not None:
            self._mirror.join(5)
        self.stop_operator()
        if self.gateway is not None:
            self.gateway.terminate()
            self.gateway.wait(30)
