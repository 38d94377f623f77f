"""`llmbudget-gateway`: command line of the gateway."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmbudget_gateway.contract import (
    DEFAULT_SHARED_NAMESPACE,
    ConfigError,
    load_config,
)
from llmbudget_gateway.serve import add_serve_command


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config), args.shared_namespace)
    except ConfigError as error:
        print(f"invalid config {args.config}:", file=sys.stderr)
        for issue in error.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    print(
        f"config {args.config} is valid: revision {config.revision}, "
        f"{len(config.budgets)} budgets, {len(config.routes)} routes, {len(config.keys)} keys"
    )
    return 0


def _render(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config), args.shared_namespace)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 1
    # The rendered config holds provider API keys: it goes to a file (mode 0600), never stdout.
    output = Path(args.output)
    output.touch(mode=0o600, exist_ok=True)
    output.write_text(config.to_json() + "\n", encoding="utf-8")
    print(f"wrote {output} (revision {config.revision})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmbudget-gateway",
        description="OpenAI-compatible LLM cost gateway: meters, prices and budgets requests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, helptext, func in (
        ("check", "validate a config file or a directory of manifests", _check),
        ("render", "render a directory of manifests into a config file", _render),
    ):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("config", help="rendered config file, or a directory of manifests")
        command.add_argument(
            "--shared-namespace",
            default=DEFAULT_SHARED_NAMESPACE,
            help="namespace whose ModelRoutes serve every namespace (default %(default)s)",
        )
        if name == "render":
            command.add_argument("-o", "--output", required=True, help="file to write")
        command.set_defaults(func=func)
    add_serve_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
