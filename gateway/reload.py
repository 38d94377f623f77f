"""Hot reload: watch the config path, swap atomically, keep the previous config if invalid.

Polls a fingerprint (paths, sizes, modification times) every `interval` seconds. That sees
Kubernetes' atomic Secret-volume updates (a `..data` symlink swap) as well as edited files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from llmbudget_gateway.contract import ConfigError, GatewayConfig
from llmbudget_gateway.contract.manifests import manifest_files
from llmbudget_gateway.services import Services

log = logging.getLogger("llmbudget.reload")
Loader = Callable[[], GatewayConfig]
Applier = Callable[[GatewayConfig], Awaitable[None]]


def fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = manifest_files(path) if path.is_dir() else [path]
        stats = []
        for file in files:
            stat = file.stat()  # follows symlinks: sees the new target after a swap
            stats.append((str(file), stat.st_size, stat.st_mtime_ns))
        return tuple(stats)
    except OSError:
        return ()


class ConfigWatcher:
    def __init__(
        self, services: Services, path: Path, loader: Loader, apply: Applier, interval: float
    ) -> None:
        self.services = services
        self.path = path
        self.loader = loader
        self.apply = apply
        self.interval = interval
        self.last_error: str | None = None
        self._seen = fingerprint(path)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            current = fingerprint(self.path)
            if current != self._seen:
                self._seen = current
                await self.reload()

    async def reload(self) -> bool:
        """Load and swap in the config; on error keep the current one. True if swapped."""
        metrics = self.services.metrics
        try:
            config = await asyncio.to_thread(self.loader)
        except ConfigError as error:
            self.last_error = str(error)
            metrics.reloads.labels("rejected").inc()
            log.error(
                "config %s rejected, keeping revision %s:\n%s",
                self.path,
                self.services.runtime.revision,
                error,
            )
            return False
        except Exception as error:  # never let a reload kill the watcher
            self.last_error = f"{type(error).__name__}: {error}"
            metrics.reloads.labels("rejected").inc()
            log.exception(
                "config %s could not be loaded; keeping revision %s",
                self.path,
                self.services.runtime.revision,
            )
            return False
        self.last_error = None
        if config.revision == self.services.runtime.revision:
            return False
        await self.apply(config)
        metrics.reloads.labels("applied").inc()
        log.info(
            "config revision %s applied (%d budgets, %d routes, %d keys)",
            config.revision,
            len(config.budgets),
            len(config.routes),
            len(config.keys),
        )
        return True
