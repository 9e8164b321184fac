"""The ``dtseg`` command. Each subcommand lives in its own module with ``add_parser(subparsers)``;
the parser it adds sets ``run=callable(args) -> int`` as its default."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from dtseg import __version__
from dtseg.errors import RandomWeightsWarning

COMMANDS = ("segment", "video", "serve", "plugins", "models", "labelstudio_config")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtseg", description="Detect-then-segment with Segment Anything.")
    parser.add_argument("--version", action="version", version=f"dtseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dtseg.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with warnings.catch_warnings():
            # every command reports random weights its own way (log line, banner, final NOTE)
            warnings.simplefilter("ignore", RandomWeightsWarning)
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
