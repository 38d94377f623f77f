"""The gateway ASGI app: routes, error handling, and the lifespan that owns every resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
import psycopg
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llmbudget_gateway import (
    __version__,
    admin,
    admin_reports,
    api_schema,
    dashboard_page,
    messages_endpoint,
    metrics_server,
    proxy,
)
from llmbudget_gateway.budgets import BudgetBook
from llmbudget_gateway.contract import GatewayConfig
from llmbudget_gateway.crash_marker import CrashMarker
from llmbudget_gateway.drain import Drain, StartupCancelled, closing
from llmbudget_gateway.errors import GatewayError, error_body
from llmbudget_gateway.ledger.lock import LedgerLock
from llmbudget_gateway.ledger.postgres import PostgresLedger
from llmbudget_gateway.ledger.sqlite import SqliteLedger
from llmbudget_gateway.ledger.writer import LedgerWriter
from llmbudget_gateway.messages_endpoint import anthropic_shaped
from llmbudget_gateway.metrics import Metrics
from llmbudget_gateway.reload import ConfigWatcher
from llmbudget_gateway.restore import apply_with_restore
from llmbudget_gateway.runtime import Runtime
from llmbudget_gateway.services import Services
from llmbudget_gateway.settings import Settings
from llmbudget_gateway.shared_budgets import SharedBudgets
from llmbudget_gateway.tokens import TokenCounter
from llmbudget_gateway.upstream import create_session

log = logging.getLogger("llmbudget.gateway")
Loader = Callable[[], GatewayConfig]
Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Answer GatewayErrors and anything unexpected in OpenAI shape; never a stack trace."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except GatewayError as error:
            return error.response()
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return Response(
                error_body("internal error in the gateway", "server_error", "internal_error"),
                500,
                media_type="application/json",
            )

    return endpoint


async def _prune_forever(services: Services) -> None:
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=services.settings.retention_days)
        try:
            deleted = await services.ledger.call(services.store.prune, cutoff)
            if deleted:
                log.info("pruned %d ledger rows older than %s", deleted, cutoff.date())
        except Exception:
            log.exception("ledger pruning failed")
        await asyncio.sleep(services.settings.prune_interval)


async def open_store(
    settings: Settings, stopping: Callable[[], bool] = lambda: False
) -> SqliteLedger | PostgresLedger:
    """The ledger the settings choose. A PostgreSQL server that is down at start is waited for
    (the process stays unready, it does not crash-loop), until `stopping()`."""
    dsn = settings.ledger_dsn
    if dsn is None:
        return SqliteLedger(settings.ledger_file)
    delay = 0.5
    while True:
        try:
            return await asyncio.to_thread(PostgresLedger, dsn)
        except psycopg.OperationalError as error:
            # psycopg's message names host and port, never the password
            log.error("ledger database %s unavailable: %s", settings.ledger_description, error)
            if stopping():
                raise StartupCancelled("stopped while waiting for the ledger database") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _share_forever(services: Services, shared: SharedBudgets) -> None:
    """Refresh the local view of shared spend; give back reservations of dead replicas."""
    last_expiry = 0.0
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(services.settings.shared_sync_interval)
        try:
            await shared.sync(services.book, datetime.now(UTC))
            if loop.time() - last_expiry > 30:
                last_expiry = loop.time()
                expired = await shared.expire(datetime.now(UTC))
                if expired:
                    log.warning("gave back %d expired reservations of a replica", expired)
        except Exception as error:
            log.warning("shared budget refresh failed: %s", type(error).__name__)


async def _watch_spikes(services: Services) -> None:
    """Today's spend spikes, every `spike_interval`: for the metric and for the admin API
    (the operator turns a new one into an Event on the namespace's TokenBudgets)."""
    gauge = services.metrics.spend_spike
    while True:
        try:
            spikes = await admin_reports.todays_spikes(services)
            services.spikes = spikes
            gauge.clear()
            for spike in spikes:
                gauge.labels(spike.namespace, spike.project or "").set(1)
        except Exception:
            log.exception("spend spike check failed")
        await asyncio.sleep(services.settings.spike_interval)


async def _start(
    app: FastAPI, settings: Settings, loader: Loader, stack: contextlib.AsyncExitStack
) -> None:
    """Build the services into `app.state`, registering each release on `stack`."""
    drain: Drain = app.state.drain
    config = await asyncio.to_thread(loader)  # an invalid config at start is fatal
    if settings.ledger_dsn is None:  # one process per SQLite ledger (ledger/lock.py)
        lock = LedgerLock(settings.ledger_file)
        await lock.acquire(stopping=lambda: drain.stop_requested)
        stack.callback(lock.release)
    marker = CrashMarker(settings.state_dir)
    unclean = marker.arm()
    store = await open_store(settings, stopping=lambda: drain.stop_requested)
    shared = None
    if settings.ledger_dsn is not None:
        shared = SharedBudgets(
            settings.ledger_dsn, settings.reservation_lease_seconds, settings.ledger_fail_open
        )
        await shared.open()
        stack.push_async_callback(shared.close)
    writer = LedgerWriter(store, flush_interval=settings.ledger_flush_interval)
    writer.start()

    async def close_writer() -> None:
        await writer.close()  # flushes every buffered row (SIGTERM path)
        if writer.depth == 0:
            marker.disarm()
        log.info("gateway stopped: %d ledger rows written", writer.written)

    stack.push_async_callback(close_writer)
    book = BudgetBook()
    metrics = Metrics(book, lambda: writer.depth)
    if unclean:
        metrics.unclean_shutdowns.inc()
        log.warning(
            "the previous gateway process on %s did not shut down cleanly (killed?): "
            "ledger rows of requests it finished in its last %.0f ms, and requests it had "
            "in flight, may be missing",
            settings.state_dir,
            settings.ledger_flush_interval * 1000,
        )
    tokens = TokenCounter(settings.state_dir / "tiktoken")
    await asyncio.to_thread(tokens.warm_up)
    session = create_session()
    stack.push_async_callback(session.close)
    services = Services(
        settings=settings,
        runtime=Runtime.build(GatewayConfig()),
        book=book,
        ledger=writer,
        store=store,
        metrics=metrics,
        session=session,
        tokens=tokens,
        shared=shared,
    )
    await apply_with_restore(services, config)
    watcher = ConfigWatcher(
        services,
        settings.config_path,
        loader,
        partial(apply_with_restore, services),
        settings.reload_interval,
    )
    tasks = [
        asyncio.create_task(watcher.run(), name="config-watcher"),
        asyncio.create_task(_prune_forever(services), name="ledger-prune"),
        asyncio.create_task(_watch_spikes(services), name="spend-spikes"),
    ]
    if shared is not None:
        tasks.append(asyncio.create_task(_share_forever(services, shared), name="shared"))

    async def cancel_tasks() -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    stack.push_async_callback(cancel_tasks)
    if settings.metrics_port is not None:
        scrape = await metrics_server.start(
            lambda: services.metrics, settings.metrics_host, settings.metrics_port
        )
        stack.push_async_callback(scrape.cleanup)
    app.state.services = services
    app.state.watcher = watcher
    log.info(
        "gateway ready: config revision %s, ledger %s",
        services.runtime.revision,
        settings.ledger_description,
    )


def create_app(settings: Settings, loader: Loader) -> HotPath:
    """`loader` returns the config (raising ConfigError); it is called at start and on reload."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every resource is released in reverse order however far startup got, so a failed
        # or cancelled start never leaves the ledger lock (or anything else) held.
        async with contextlib.AsyncExitStack() as stack:
            await _start(app, settings, loader, stack)
            yield

    app = FastAPI(
        title="llmbudget gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.drain = Drain(settings.drain_seconds)
    routes: list[tuple[str, Handler, str]] = [
        ("/v1/chat/completions", proxy.chat_completions, "POST"),
        ("/v1/embeddings", proxy.embeddings, "POST"),
        ("/v1/models", proxy.list_models, "GET"),
        ("/admin/v1/budgets", admin.list_budgets, "GET"),
        ("/admin/v1/budgets/{namespace}/{name}", admin.get_budget, "GET"),
        ("/admin/v1/records", admin.list_records, "GET"),
        ("/admin/v1/reports/spend", admin_reports.spend, "GET"),
        ("/admin/v1/reports/daily", admin_reports.daily_trend, "GET"),
        ("/admin/v1/reports/anomalies", admin_reports.anomalies, "GET"),
        ("/admin/v1/export", admin_reports.export, "GET"),
        ("/openapi.json", api_schema.openapi, "GET"),
        ("/dashboard", dashboard_page.page, "GET"),
        ("/dashboard/{name}", dashboard_page.asset, "GET"),
        ("/healthz", healthz, "GET"),
        ("/readyz", readyz, "GET"),
    ]
    for path, handler, method in routes:
        app.add_route(path, guarded(handler), methods=[method])
    hot = {
        ("POST", "/v1/chat/completions"): guarded(proxy.chat_completions),
        ("POST", "/v1/embeddings"): guarded(proxy.embeddings),
        ("POST", "/v1/messages"): anthropic_shaped(messages_endpoint.messages),
    }

    @app.exception_handler(404)
    async def not_found(request: Request, _: Exception) -> Response:
        return GatewayError(404, f"unknown path {request.url.path}", code="unknown_url").response()

    @app.exception_handler(405)
    async def not_allowed(request: Request, _: Exception) -> Response:
        return GatewayError(
            405,
            f"method {request.method} not allowed on {request.url.path}",
            code="method_not_allowed",
        ).response()

    return HotPath(app, hot, app.state.drain)


class HotPath:
    """Serves the proxy endpoints straight from ASGI, everything else through FastAPI.

    The proxy handlers answer every error themselves (`guarded`), so FastAPI's middleware
    stack and router would only add per-request cost on the hot path (docs/benchmarks.md).
    Lifespan, admin and probes go through FastAPI; /metrics has its own listener
    (metrics_server.py).
    """

    def __init__(
        self, app: FastAPI, endpoints: dict[tuple[str, str], Handler], drain: Drain
    ) -> None:
        self.app = app
        self.endpoints = endpoints
        self.drain = drain

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.drain.draining:  # SIGTERM: each client reconnects elsewhere (drain.py)
                send = closing(send)
            endpoint = self.endpoints.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self.app  # request.app.state.services, as under FastAPI
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        return Response(b'{"status":"starting"}', 503, media_type="application/json")
    if request.app.state.drain.draining:
        return Response(b'{"status":"draining"}', 503, media_type="application/json")
    watcher: ConfigWatcher = request.app.state.watcher
    body = {
        "status": "ready",
        "configRevision": services.runtime.revision,
        "budgets": len(services.runtime.config.budgets),
        "routes": len(services.runtime.config.routes),
        "lastReloadError": watcher.last_error,
    }
    return Response(orjson.dumps(body), media_type="application/json")
