"""`llmbudget-operator`: run the Kopf operator (standalone, liveness on :8081/healthz)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llmbudget-operator",
        description="Reconciles TokenBudgets and ModelRoutes into the llmbudget gateway's "
        "config, mints namespace API keys, writes spend into TokenBudget status. "
        "Settings come from LLMBUDGET_* environment variables (docs/operator.md).",
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint (default %(default)s; empty to disable)",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only these namespaces (repeatable; default: all)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.namespace:
        os.environ["LLMBUDGET_WATCH_NAMESPACES"] = ",".join(args.namespace)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import kopf

    import llmbudget_operator.handlers  # noqa: F401 - registers the handlers

    scope: dict[str, Any] = (
        {"namespaces": args.namespace} if args.namespace else {"clusterwide": True}
    )
    asyncio.run(kopf.operator(standalone=True, liveness_endpoint=args.liveness or None, **scope))
    return 0


if __name__ == "__main__":
    sys.exit(main())
