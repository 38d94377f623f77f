"""The gateway with parts switched off, to locate what each costs (docs/benchmarks.md).

    LLMBUDGET_ABLATE=ledger python tests/benchmarks/ablated_gateway.py serve ...

- `ledger`: ledger rows are built but never submitted (no database writes);
- `metering`: no reservation, pricing, settlement, ledger row or request metrics (admit and
  finish do nothing but mark the exchange finished).

Authentication, parsing, routing and forwarding run as in the product. A measuring tool,
never a way to run the gateway: it bills nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from llmbudget_gateway.cli import main
from llmbudget_gateway.ledger.writer import LedgerWriter
from llmbudget_gateway.metering import Exchange


def _switch_off(parts: set[str]) -> None:
    def submit(self: LedgerWriter, record: object, crossings: object = None) -> None:
        pass

    async def admit(self: Exchange, route: Any, backends: Any, *_: Any) -> None:
        self.route, self.backend = route, backends[0]

    def finish(self: Exchange, *_: Any, **__: Any) -> None:
        self.finished = True

    if "ledger" in parts:
        setattr(LedgerWriter, "submit", submit)  # noqa: B010 - patching a class on purpose
    if "metering" in parts:
        setattr(Exchange, "admit", admit)  # noqa: B010
        setattr(Exchange, "finish", finish)  # noqa: B010


if __name__ == "__main__":
    parts = {p for p in os.environ.get("LLMBUDGET_ABLATE", "").split(",") if p}
    unknown = parts - {"ledger", "metering"}
    if unknown:
        sys.exit(f"unknown LLMBUDGET_ABLATE parts: {sorted(unknown)} (ledger, metering)")
    _switch_off(parts)
    sys.exit(main())
