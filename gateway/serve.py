"""`llmbudget-gateway serve`: run the gateway (uvicorn, one process, SIGTERM flushes the ledger).

One process per replica on purpose: budget reservations live in the process, so they are exact.
Scale out with replicas sharing a PostgreSQL ledger, not with uvicorn workers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from llmbudget_gateway.contract import DEFAULT_SHARED_NAMESPACE, ConfigError
from llmbudget_gateway.contract.money import usd_to_micros
from llmbudget_gateway.drain import Drain
from llmbudget_gateway.settings import Settings
from llmbudget_gateway.standalone import load_standalone

log = logging.getLogger("llmbudget.gateway")


def add_serve_command(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway on a rendered config (the operator's Secret, mounted) or "
        "on a directory of TokenBudget/ModelRoute manifests (standalone mode).",
    )
    serve.add_argument("config", type=Path, help="config file, mounted Secret dir, or manifests")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="listen port (default %(default)s)")
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="port of the separate /metrics listener, never the API port (default "
        "%(default)s; 0: no metrics listener)",
    )
    serve.add_argument(
        "--metrics-host",
        default=None,
        help="listen address of /metrics (default: the --host address)",
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".llmbudget"),
        help="ledger, standalone keys, tokenizer cache (default %(default)s)",
    )
    serve.add_argument(
        "--ledger",
        type=Path,
        default=None,
        help="SQLite ledger file (default <state-dir>/ledger.sqlite3)",
    )
    serve.add_argument(
        "--ledger-dsn-file",
        type=Path,
        default=None,
        help="file with a PostgreSQL DSN: a ledger and budgets shared by several replicas "
        "(or set LLMBUDGET_LEDGER_DSN); default: the SQLite file",
    )
    serve.add_argument(
        "--ledger-fail-open",
        action="store_true",
        help="with PostgreSQL: when the database is unreachable, admit requests on this "
        "replica's view of the budgets instead of refusing them with 503",
    )
    serve.add_argument(
        "--shared-namespace",
        default=DEFAULT_SHARED_NAMESPACE,
        help="namespace whose ModelRoutes serve everyone (default %(default)s)",
    )
    serve.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file with the admin API token (or set LLMBUDGET_ADMIN_TOKEN)",
    )
    serve.add_argument(
        "--fake-upstream",
        action="store_true",
        help="start the built-in fake provider and send every backend to it",
    )
    serve.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024)
    serve.add_argument(
        "--default-max-tokens",
        type=int,
        default=4096,
        help="completion tokens reserved when a request sets no max_tokens",
    )
    serve.add_argument(
        "--reload-interval",
        type=float,
        default=2.0,
        help="seconds between config change checks (default %(default)s)",
    )
    serve.add_argument("--retention-days", type=int, default=90)
    serve.add_argument(
        "--spike-percent",
        type=int,
        default=100,
        help="a day's spend this many percent above the day before is a spike (default "
        "%(default)s: doubled)",
    )
    serve.add_argument(
        "--spike-min-usd",
        type=Decimal,
        default=Decimal(1),
        help="days below this spend are never spikes (default %(default)s)",
    )
    serve.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        help="on SIGTERM, keep serving this long with /readyz 503 and Connection: close "
        "before stopping, so load balancers and clients move away first (default "
        "%(default)s; the chart sets 5)",
    )
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=run_serve)


def _admin_token(args: argparse.Namespace) -> str | None:
    if args.admin_token_file is not None:
        return args.admin_token_file.read_text().strip() or None
    return os.environ.get("LLMBUDGET_ADMIN_TOKEN") or None


def _ledger_dsn(args: argparse.Namespace) -> str | None:
    if args.ledger_dsn_file is not None:
        return args.ledger_dsn_file.read_text().strip() or None
    return os.environ.get("LLMBUDGET_LEDGER_DSN") or None


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop

        return uvloop.run(_serve(args))
    except ImportError:
        return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from llmbudget_gateway import fake_upstream
    from llmbudget_gateway.app import create_app

    fake_runner = None
    override = None
    if args.fake_upstream:
        fake_runner, override = await fake_upstream.start()
    settings = Settings(
        config_path=args.config,
        state_dir=args.state_dir,
        ledger_path=args.ledger,
        ledger_dsn=_ledger_dsn(args),
        ledger_fail_open=args.ledger_fail_open,
        shared_namespace=args.shared_namespace,
        admin_token=_admin_token(args),
        max_body_bytes=args.max_body_bytes,
        default_max_tokens=args.default_max_tokens,
        reload_interval=args.reload_interval,
        retention_days=args.retention_days,
        spike_percent=args.spike_percent,
        spike_min_micros=usd_to_micros(args.spike_min_usd),
        upstream_override=override,
        forward_fake_scripts=args.fake_upstream,
        metrics_host=args.metrics_host or args.host,
        metrics_port=args.metrics_port or None,
        drain_seconds=args.drain_seconds,
    )
    public_url = f"http://{args.host}:{args.port}/v1"
    loader = partial(
        load_standalone, args.config, args.shared_namespace, args.state_dir, public_url
    )
    try:
        loader()  # fail fast, with every issue listed, before binding the port
    except ConfigError as error:
        print(f"invalid config {args.config}:", file=sys.stderr)
        for issue in error.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    config = uvicorn_config(
        create_app(settings, loader),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=30,
    )
    server = GatewayServer(config)
    keys_dir = args.state_dir / "keys"
    print(
        f"llmbudget gateway: {public_url}  (admin API "
        f"{'on' if settings.admin_token else 'off'}; "
        f"{'fake upstream ' + override if override else 'real providers'}; metrics "
        f"{'off' if settings.metrics_port is None else f'on port {settings.metrics_port}'})",
        flush=True,
    )
    if keys_dir.is_dir():
        print(f"API keys for the namespaces: {keys_dir}/*.env", flush=True)
    try:
        await server.serve()
    finally:
        if fake_runner is not None:
            await fake_runner.cleanup()
    return 0 if server.started else 1


def uvicorn_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's config for the gateway: httptools with the HTTP limits of http_limits.py
    (JSON errors for oversized URLs and headers), no access log, no proxy headers."""
    from llmbudget_gateway.http_limits import LimitedHttpToolsProtocol

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        http=LimitedHttpToolsProtocol,
        proxy_headers=False,  # no client addresses are used; saves work per request
        lifespan="on",
        **options,
    )


def _freeze_startup_heap() -> None:
    """Keep the cyclic garbage collector off the objects built at start.

    The config, price database and tokenizer state live as long as the process; full
    collections walking them stalled the event loop for tens of milliseconds (p99 at 16
    connections 32-42 ms, 8 ms once frozen: docs/benchmarks.md). Young objects are
    collected every 10,000 allocations instead of 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


class GatewayServer(uvicorn.Server):
    """uvicorn's server, freezing the startup heap once the app has started, and draining
    on SIGTERM (drain.py) before it stops."""

    _loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)  # runs the app's lifespan startup first
        self._loop = asyncio.get_running_loop()
        _freeze_startup_heap()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drain: Drain | None = getattr(getattr(self.config.app, "state", None), "drain", None)
        if drain is not None and not self.started:
            drain.stop_requested = True  # startup may be waiting (ledger lock, database)
        if (
            sig == signal.SIGTERM
            and drain is not None
            and drain.seconds > 0
            and not drain.draining
            and self._loop is not None
            and not self.should_exit
        ):
            drain.draining = True
            log.info("SIGTERM: draining for %.1f s, then stopping", drain.seconds)
            stop = partial(super().handle_exit, sig, frame)
            self._loop.call_soon_threadsafe(self._loop.call_later, drain.seconds, stop)
            return
        super().handle_exit(sig, frame)
