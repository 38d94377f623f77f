"""Real servers on loopback for gateway tests: the fake provider and the gateway itself."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from aiohttp import web

from llmbudget_gateway import fake_upstream
from llmbudget_gateway.app import create_app
from llmbudget_gateway.serve import uvicorn_config
from llmbudget_gateway.services import Services
from llmbudget_gateway.settings import Settings
from llmbudget_gateway.standalone import load_standalone

ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LoopThread:
    """An asyncio loop on a background thread, to host servers while tests call them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class FakeProvider:
    url: str  # ends in /v1
    runner: web.AppRunner
    loop: LoopThread


def start_fake_provider() -> FakeProvider:
    loop = LoopThread()
    runner, url = loop.run(fake_upstream.start())
    return FakeProvider(url, runner, loop)


def stop_fake_provider(fake: FakeProvider) -> None:
    fake.loop.run(fake.runner.cleanup())
    fake.loop.stop()


def key_secret(namespace: str, budget: str, name: str, key: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata:
          name: {budget}-{name}-key
          namespace: {namespace}
          labels: {{llmbudget.io/budget: {budget}, llmbudget.io/key: {name}}}
        stringData: {{OPENAI_API_KEY: {key}}}
        """)


def route_manifest(
    model: str,
    upstream: str,
    namespace: str = "llmbudget-system",
    name: str | None = None,
    pricing: str = '{input: "2", output: "8"}',
    extra: str = "",
) -> str:
    return (
        textwrap.dedent(f"""\
        apiVersion: llmbudget.io/v1alpha1
        kind: ModelRoute
        metadata: {{name: {name or model.replace(".", "-")}, namespace: {namespace}}}
        spec:
          model: {model}
          backends:
            - name: main
              provider: OpenAI
              baseURL: {upstream}
              pricing: {pricing}
        """)
        + extra
    )


def budget_manifest(namespace: str, name: str, spec: str) -> str:
    return (
        "apiVersion: llmbudget.io/v1alpha1\nkind: TokenBudget\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec), "  ")
    )


@dataclass
class Gateway:
    """A gateway serving on a loopback port from a manifest directory."""

    manifests: Path
    state_dir: Path
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    settings_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """/metrics, on its own listener (never the API port)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def services(self) -> Services:
        assert self.server is not None
        app: Any = self.server.config.app
        services: Services = app.state.services
        return services

    def write(self, name: str, text: str) -> None:
        (self.manifests / name).write_text(text)

    def start(self) -> Gateway:
        settings = Settings(
            config_path=self.manifests,
            state_dir=self.state_dir,
            admin_token=ADMIN_TOKEN,
            reload_interval=0.1,
            ledger_flush_interval=0.01,
            **{
                "forward_fake_scripts": True,  # the fake providers are scripted by `fake`
                "metrics_port": self.metrics_port,
                **self.settings_overrides,
            },
        )
        loader: Callable[[], Any] = lambda: load_standalone(  # noqa: E731
            self.manifests, settings.shared_namespace, self.state_dir, self.url
        )
        config = uvicorn_config(
            create_app(settings, loader), "127.0.0.1", self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(300):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("gateway failed to start")
            threading.Event().wait(0.02)
        raise TimeoutError("gateway did not start")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(30)
            self.server = None
