"""Detects that the previous gateway process on this state directory died without a clean
shutdown (SIGKILL, OOM kill, power loss), so the loss it may have caused is reported.

A clean shutdown (SIGTERM) flushes every ledger row before removing the marker. A process
killed outright loses at most the rows it had not yet written: those of the requests that
finished within the last ledger flush interval (50 ms by default), plus requests in flight.
"""

from __future__ import annotations

import os
from pathlib import Path


class CrashMarker:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "gateway.running"

    def arm(self) -> bool:
        """Mark this process as running; True if the previous one never disarmed."""
        unclean = self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{os.getpid()}\n", encoding="utf-8")
        return unclean

    def disarm(self) -> None:
        self.path.unlink(missing_ok=True)
