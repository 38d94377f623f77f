"""`llmbudget-operator`: command line of the operator."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llmbudget-operator",
        description="Reconciles TokenBudgets and ModelRoutes into the llmbudget gateway.",
    )
    parser.parse_args(argv)
    print("llmbudget-operator: the reconcile loop is not built yet (issue #4).", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
