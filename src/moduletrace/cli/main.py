"""Entry point of the ``moduletrace`` console command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from moduletrace._version import __version__
from moduletrace.errors import ModuleTraceError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moduletrace",
        description="Find the module loads that raced their module's creation.",
    )
    parser.add_argument("--version", action="version", version=f"moduletrace {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status (0/1/2/3, see README)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            parser.print_help()
            return 2
    except ModuleTraceError as exc:
        print(f"moduletrace: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
